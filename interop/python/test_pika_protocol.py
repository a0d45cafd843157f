"""pika against Warren: protocol details clients depend on (issue 15), each as RabbitMQ 3.10
behaves — idempotent unbind, the default exchange refusing declares, Decimal arguments, the
client's identity in the management API, and a clean close while publishes are in flight.
"""

import base64
import decimal
import json
import os
import time
import urllib.request
import uuid

import pika
import pika.exceptions
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
HTTP_PORT = os.environ.get("WARREN_HTTP_PORT")


def params(**overrides):
    p = pika.URLParameters(AMQP_URL)
    p.blocked_connection_timeout = 10
    p.socket_timeout = 5
    p.connection_attempts = 1
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


def name(prefix):
    return f"interop.pika.{prefix}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn():
    c = pika.BlockingConnection(params())
    yield c
    if c.is_open:
        c.close()


def test_unbind_after_the_auto_delete_queue_is_gone(conn):
    ch = conn.channel()
    ex = name("x")
    ch.exchange_declare(ex, "direct", auto_delete=True)
    q = ch.queue_declare("", auto_delete=True).method.queue
    ch.queue_bind(q, ex, "k")
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)  # the last consumer goes: the queue (and then the exchange) go too
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare(q, passive=True)
    ch = conn.channel()
    # Cleanup code unbinds anyway: RabbitMQ answers unbind-ok for a missing queue or exchange.
    assert isinstance(ch.queue_unbind(q, ex, "k").method, pika.spec.Queue.UnbindOk)
    assert isinstance(ch.queue_unbind(q, "amq.direct", "k").method, pika.spec.Queue.UnbindOk)
    assert isinstance(ch.exchange_unbind(ex, "amq.fanout", "k").method, pika.spec.Exchange.UnbindOk)
    assert ch.is_open


@pytest.mark.parametrize("passive", [True, False])
def test_declaring_the_default_exchange_is_refused(conn, passive):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare("", "direct", passive=passive)
    assert e.value.reply_code == 403
    assert e.value.reply_text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    assert conn.is_open


def test_decimal_arguments(conn):
    ch = conn.channel()
    q = name("decimal")
    # pika sends Decimal as the AMQP decimal type `D`.
    ch.queue_declare(
        q,
        auto_delete=True,
        arguments={
            "x-max-length": decimal.Decimal("2"),
            "x-delayed-retry-type": "all",
            "x-delayed-retry-multiplier": decimal.Decimal("2.0"),
        },
    )
    for body in (b"a", b"b", b"c"):
        ch.basic_publish("", q, body)
    deadline = time.monotonic() + 5
    while ch.queue_declare(q, passive=True).method.message_count != 2:
        assert time.monotonic() < deadline, "x-max-length given as Decimal('2') not applied"
        conn.sleep(0.02)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(name("bad"), arguments={"x-max-priority": decimal.Decimal("300")})
    assert e.value.reply_code == 406
    assert e.value.reply_text.endswith("{max_value_exceeded,300}")


@pytest.mark.skipif(not HTTP_PORT, reason="WARREN_HTTP_PORT not set (run through interop/run.sh)")
def test_connection_name_and_client_properties_in_the_management_api():
    cname = name("conn")
    c = pika.BlockingConnection(params(client_properties={"connection_name": cname}))
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{HTTP_PORT}/api/connections",
            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
        )
        # RabbitMQ lists a connection once its stats are emitted (seconds); Warren at once.
        deadline = time.monotonic() + 15
        while True:
            conns = json.load(urllib.request.urlopen(req, timeout=5))
            mine = [x for x in conns if x.get("user_provided_name") == cname]
            if mine or time.monotonic() > deadline:
                break
            c.sleep(0.2)
        assert len(mine) == 1, conns
        props = mine[0]["client_properties"]
        assert props["product"] == "Pika Python Client Library"
        assert props["version"] == pika.__version__
        assert props["connection_name"] == cname
        assert props["capabilities"]["publisher_confirms"] is True
        assert mine[0]["connected_at"] <= time.time() * 1000
    finally:
        c.close()


def test_close_right_after_a_burst_of_publishes(conn):
    """Closing while publishes are still being written completes cleanly (close-ok, no reset)."""
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    body = b"x" * 4096
    for _ in range(2000):
        ch.basic_publish("", q, body)
    conn.close()
    assert conn.is_closed
