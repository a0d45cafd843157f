"""pika (BlockingConnection) against Warren: the core AMQP 0-9-1 matrix.

Every test uses its own uniquely named queues/exchanges so the suite can run against a broker
that other suites share. Everything waits with a deadline; nothing blocks forever.
"""

import os
import ssl
import time
import uuid

import pika
import pika.exceptions
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


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


@pytest.fixture
def ch(conn):
    return conn.channel()


def get_body(ch, queue, timeout=5.0, auto_ack=True):
    """basic.get with polling until a message arrives (routing is asynchronous in no case,
    but polling keeps the test robust)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            raise AssertionError(f"no message on {queue} within {timeout}s")
        ch.connection.sleep(0.02)


def depth(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def drain(ch, queue):
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


# --- connection -----------------------------------------------------------------------------


def test_connect_plain_and_server_properties():
    creds = pika.PlainCredentials("guest", "guest")
    p = params(credentials=creds)
    c = pika.BlockingConnection(p)
    try:
        assert c.is_open
        props = c._impl.server_properties
        caps = props["capabilities"]
        assert caps["publisher_confirms"] is True
        assert caps["basic.nack"] is True
        assert caps["consumer_cancel_notify"] is True
        ch = c.channel()
        assert ch.is_open
        ch.close()
    finally:
        c.close()
    assert c.is_closed


def test_bad_password_is_refused():
    p = params(credentials=pika.PlainCredentials("guest", "wrong-password"))
    with pytest.raises(
        (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)
    ):
        pika.BlockingConnection(p)


# --- exchanges and bindings -----------------------------------------------------------------


def test_direct_exchange(ch):
    ex, qa, qb = name("direct"), name("qa"), name("qb")
    ch.exchange_declare(ex, exchange_type="direct", auto_delete=True)
    for q, key in ((qa, "a"), (qb, "b")):
        ch.queue_declare(q, exclusive=True)
        ch.queue_bind(q, ex, routing_key=key)
    ch.basic_publish(ex, "a", b"to-a")
    ch.basic_publish(ex, "b", b"to-b")
    ch.basic_publish(ex, "c", b"nowhere")
    assert get_body(ch, qa)[2] == b"to-a"
    assert get_body(ch, qb)[2] == b"to-b"
    assert depth(ch, qa) == 0 and depth(ch, qb) == 0
    ch.queue_unbind(qa, ex, routing_key="a")
    ch.basic_publish(ex, "a", b"after-unbind")
    ch.basic_publish(ex, "b", b"marker")
    assert get_body(ch, qb)[2] == b"marker"
    assert depth(ch, qa) == 0


def test_fanout_exchange(ch):
    ex = name("fanout")
    ch.exchange_declare(ex, exchange_type="fanout", auto_delete=True)
    queues = [name(f"f{i}") for i in range(3)]
    for q in queues:
        ch.queue_declare(q, exclusive=True)
        ch.queue_bind(q, ex, routing_key="ignored")
    ch.basic_publish(ex, "whatever", b"broadcast")
    for q in queues:
        method, _p, body = get_body(ch, q)
        assert body == b"broadcast"
        assert method.exchange == ex
        assert method.routing_key == "whatever"


def test_topic_exchange(ch):
    ex, q_star, q_hash = name("topic"), name("star"), name("hash")
    ch.exchange_declare(ex, exchange_type="topic", auto_delete=True)
    ch.queue_declare(q_star, exclusive=True)
    ch.queue_declare(q_hash, exclusive=True)
    ch.queue_bind(q_star, ex, routing_key="stock.*.nyse")
    ch.queue_bind(q_hash, ex, routing_key="stock.#")
    ch.basic_publish(ex, "stock.ibm.nyse", b"1")
    ch.basic_publish(ex, "stock.ibm", b"2")
    ch.basic_publish(ex, "stock", b"3")
    ch.basic_publish(ex, "bond.x.nyse", b"4")
    ch.basic_publish(ex, "stock.a.b.nyse", b"5")
    # A marker on both so we know routing of everything above is done.
    ch.basic_publish(ex, "stock.end.nyse", b"end")
    assert [get_body(ch, q_star)[2] for _ in range(2)] == [b"1", b"end"]
    assert [get_body(ch, q_hash)[2] for _ in range(5)] == [b"1", b"2", b"3", b"5", b"end"]
    assert drain(ch, q_star) == [] and drain(ch, q_hash) == []


def test_headers_exchange(ch):
    ex, q_all, q_any = name("headers"), name("all"), name("any")
    ch.exchange_declare(ex, exchange_type="headers", auto_delete=True)
    ch.queue_declare(q_all, exclusive=True)
    ch.queue_declare(q_any, exclusive=True)
    ch.queue_bind(q_all, ex, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(q_any, ex, arguments={"x-match": "any", "format": "pdf", "type": "log"})

    def pub(body, headers):
        ch.basic_publish(ex, "", body, pika.BasicProperties(headers=headers))

    pub(b"both", {"format": "pdf", "type": "report"})
    pub(b"format-only", {"format": "pdf"})
    pub(b"log", {"type": "log"})
    pub(b"none", {"format": "zip"})
    pub(b"end", {"format": "pdf", "type": "report"})
    assert [get_body(ch, q_all)[2] for _ in range(2)] == [b"both", b"end"]
    assert [get_body(ch, q_any)[2] for _ in range(4)] == [b"both", b"format-only", b"log", b"end"]
    assert drain(ch, q_all) == [] and drain(ch, q_any) == []


def test_exchange_to_exchange_binding(ch):
    src, dst, q = name("e2e-src"), name("e2e-dst"), name("e2e-q")
    ch.exchange_declare(src, exchange_type="topic", auto_delete=True)
    ch.exchange_declare(dst, exchange_type="fanout", auto_delete=True)
    ch.exchange_bind(destination=dst, source=src, routing_key="a.#")
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, dst)
    ch.basic_publish(src, "b.x", b"skip")
    ch.basic_publish(src, "a.x", b"via-e2e")
    method, _p, body = get_body(ch, q)
    assert body == b"via-e2e"
    assert method.exchange == src
    assert method.routing_key == "a.x"
    assert drain(ch, q) == []


# --- publish / get / consume / cancel -------------------------------------------------------


def test_publish_get_with_properties(ch):
    q = name("props")
    ok = ch.queue_declare(q, exclusive=True)
    assert ok.method.queue == q and ok.method.message_count == 0
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"x-int": 42, "x-str": "hi", "x-bool": True, "x-list": [1, "two"], "x-nested": {"k": "v"}},
        delivery_mode=2,
        priority=3,
        correlation_id="corr-1",
        reply_to="somewhere",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="kind",
        user_id="guest",
        app_id="interop",
    )
    body = b'{"hello": "world"}' + bytes(range(256)) * 1024  # > frame_max: multi-frame body
    ch.basic_publish("", q, body, props)
    ch.basic_publish("", q, b"second")
    method, got, got_body = get_body(ch, q)
    assert got_body == body
    assert method.message_count == 1
    assert method.redelivered is False
    assert method.exchange == "" and method.routing_key == q
    assert got.content_type == "application/json"
    assert got.content_encoding == "utf-8"
    assert got.headers == {"x-int": 42, "x-str": "hi", "x-bool": True, "x-list": [1, "two"], "x-nested": {"k": "v"}}
    assert got.delivery_mode == 2
    assert got.priority == 3
    assert got.correlation_id == "corr-1"
    assert got.reply_to == "somewhere"
    assert got.expiration == "60000"
    assert got.message_id == "msg-1"
    assert got.timestamp == 1700000000
    assert got.type == "kind"
    assert got.user_id == "guest"
    assert got.app_id == "interop"
    assert get_body(ch, q)[2] == b"second"
    assert ch.basic_get(q) == (None, None, None)


def test_consume_and_cancel(conn, ch):
    q = name("consume")
    ch.queue_declare(q, exclusive=True)
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    got = []

    def on_message(channel, method, props, body):
        got.append((method.consumer_tag, method.delivery_tag, body))
        channel.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(q, on_message, consumer_tag="interop-ctag")
    assert tag == "interop-ctag"
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert [b for _, _, b in got] == [f"m{i}".encode() for i in range(5)]
    assert all(t == "interop-ctag" for t, _, _ in got)
    assert [d for _, d, _ in got] == [1, 2, 3, 4, 5]
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(tag)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 0
    ch.basic_publish("", q, b"after-cancel")
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 5
    assert depth(ch, q) == 1
    assert get_body(ch, q)[2] == b"after-cancel"


def test_consume_generator_and_server_generated_names(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")
    ch.basic_publish("", q, b"gen")
    for method, props, body in ch.consume(q, inactivity_timeout=5):
        assert method is not None, "no delivery"
        assert body == b"gen"
        ch.basic_ack(method.delivery_tag)
        break
    assert ch.cancel() == 0


# --- ack / nack / reject --------------------------------------------------------------------


def test_nack_and_reject_requeue_sets_redelivered(ch):
    q = name("requeue")
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"again")
    m1, _p, b1 = get_body(ch, q, auto_ack=False)
    assert b1 == b"again" and m1.redelivered is False
    ch.basic_nack(m1.delivery_tag, requeue=True)
    m2, _p, b2 = get_body(ch, q, auto_ack=False)
    assert b2 == b"again" and m2.redelivered is True
    assert m2.delivery_tag == m1.delivery_tag + 1
    ch.basic_reject(m2.delivery_tag, requeue=True)
    m3, _p, b3 = get_body(ch, q, auto_ack=False)
    assert b3 == b"again" and m3.redelivered is True
    ch.basic_reject(m3.delivery_tag, requeue=False)
    assert ch.basic_get(q) == (None, None, None)
    assert depth(ch, q) == 0


def test_nack_multiple_and_ack_multiple(ch):
    q = name("multi")
    ch.queue_declare(q, exclusive=True)
    for i in range(4):
        ch.basic_publish("", q, f"{i}".encode())
    tags = [get_body(ch, q, auto_ack=False)[0].delivery_tag for _ in range(4)]
    ch.basic_nack(tags[2], multiple=True, requeue=True)  # requeues 0, 1, 2
    assert depth(ch, q) == 3
    again = [get_body(ch, q, auto_ack=False) for _ in range(3)]
    assert sorted(b for _, _, b in again) == [b"0", b"1", b"2"]
    assert all(m.redelivered for m, _, _ in again)
    ch.basic_ack(tags[3])
    ch.basic_ack(again[-1][0].delivery_tag, multiple=True)  # the three redeliveries
    assert depth(ch, q) == 0
    # Nothing is left unacked: closing the channel must not requeue anything.
    ch.close()
    ch2 = ch.connection.channel()
    assert depth(ch2, q) == 0


def test_unacked_requeued_when_channel_closes(conn):
    q = name("close-requeue")
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"unacked")
    m, _p, _b = get_body(ch, q, auto_ack=False)
    assert m.redelivered is False
    ch.close()
    ch2 = conn.channel()
    m2, _p, b2 = get_body(ch2, q)
    assert b2 == b"unacked" and m2.redelivered is True
    ch2.queue_delete(q)


def test_unknown_delivery_tag_is_406(conn):
    ch = conn.channel()
    q = name("badtag")
    ch.queue_declare(q, exclusive=True)
    ch.basic_ack(12345)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(q, passive=True)
    assert e.value.reply_code == 406
    assert "PRECONDITION_FAILED" in e.value.reply_text


# --- qos ------------------------------------------------------------------------------------


def test_qos_prefetch_limits_unacked(conn):
    ch = conn.channel()
    q = name("qos")
    ch.queue_declare(q, exclusive=True)
    for i in range(10):
        ch.basic_publish("", q, f"{i}".encode())
    ch.basic_qos(prefetch_count=3)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert [b for _, b in got] == [b"0", b"1", b"2"], "prefetch=3 must stop at 3 unacked"
    ch.basic_ack(got[0][0])
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert [b for _, b in got] == [b"0", b"1", b"2", b"3"]
    ch.basic_ack(got[-1][0], multiple=True)
    deadline = time.monotonic() + 5
    while len(got) < 7 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert [b for _, b in got] == [f"{i}".encode() for i in range(7)]


# --- publisher confirms ---------------------------------------------------------------------


def test_publisher_confirms(ch):
    q = name("confirm")
    ch.queue_declare(q, exclusive=True)
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", q, f"c{i}".encode(), pika.BasicProperties(delivery_mode=2))
    assert depth(ch, q) == 50
    # Unroutable but not mandatory: confirmed (acked), silently dropped.
    ch.basic_publish("", name("missing"), b"dropped")
    with pytest.raises(pika.exceptions.UnroutableError) as e:
        ch.basic_publish("", name("missing"), b"returned", mandatory=True)
    returned = e.value.messages
    assert len(returned) == 1
    assert returned[0].body == b"returned"
    assert returned[0].method.reply_code == 312
    assert returned[0].method.reply_text == "NO_ROUTE"
    # The channel keeps working after a return.
    ch.basic_publish("", q, b"after", mandatory=True)
    assert depth(ch, q) == 51


def test_mandatory_return_without_confirms(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, m.routing_key, b)))
    key = name("nowhere")
    ch.basic_publish("", key, b"bounce", mandatory=True)
    deadline = time.monotonic() + 5
    while not returned and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert returned == [(312, key, b"bounce")]


def test_publish_to_missing_exchange_is_404(ch):
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_publish(name("no-such-exchange"), "k", b"x")
    assert e.value.reply_code == 404
    assert "NOT_FOUND" in e.value.reply_text


# --- transactions ---------------------------------------------------------------------------


def test_transactions_commit_and_rollback(conn):
    ch = conn.channel()
    q = name("tx")
    ch.queue_declare(q, exclusive=True)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed-1")
    ch.basic_publish("", q, b"committed-2")
    # Not visible before commit.
    other = conn.channel()
    assert depth(other, q) == 0
    ch.tx_commit()
    assert depth(other, q) == 2
    # Acks inside a transaction take effect on commit only.
    m1, _p, b1 = get_body(ch, q, auto_ack=False)
    assert b1 == b"committed-1"
    ch.basic_ack(m1.delivery_tag)
    ch.tx_rollback()
    ch.tx_commit()
    # The rolled-back ack left committed-1 unacked; ack it for real now.
    ch.basic_ack(m1.delivery_tag)
    ch.tx_commit()
    m2, _p, b2 = get_body(ch, q, auto_ack=False)
    assert b2 == b"committed-2"
    ch.basic_ack(m2.delivery_tag)
    ch.tx_commit()
    assert depth(other, q) == 0
    ch.close()
    assert depth(other, q) == 0


def test_commit_without_select_is_406(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.tx_commit()
    assert e.value.reply_code == 406


# --- passive declares and channel-close codes -----------------------------------------------


def test_passive_declare_existing(ch):
    q, ex = name("passive-q"), name("passive-ex")
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"x")
    ch.basic_publish("", q, b"y")
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.queue == q and ok.method.message_count == 2 and ok.method.consumer_count == 0
    ch.exchange_declare(ex, exchange_type="topic", auto_delete=True)
    ch.exchange_declare(ex, passive=True)
    ch.exchange_declare("amq.topic", passive=True)


def test_passive_queue_missing_is_404(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(name("nope"), passive=True)
    assert e.value.reply_code == 404
    assert e.value.reply_text.startswith("NOT_FOUND")
    assert ch.is_closed
    assert conn.is_open
    assert conn.channel().is_open


def test_passive_exchange_missing_is_404(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(name("nope-ex"), passive=True)
    assert e.value.reply_code == 404


def test_exclusive_queue_other_connection_is_405(ch):
    q = name("exclusive")
    ch.queue_declare(q, exclusive=True)
    other = pika.BlockingConnection(params())
    try:
        och = other.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            och.basic_consume(q, lambda *a: None)
        assert e.value.reply_code == 405
        assert "RESOURCE_LOCKED" in e.value.reply_text
        och = other.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            och.queue_declare(q)
        assert e.value.reply_code == 405
    finally:
        other.close()


def test_redeclare_with_different_arguments_is_406(conn):
    q = name("redeclare")
    ch = conn.channel()
    ch.queue_declare(q, durable=False, auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(q, durable=True)
    assert e.value.reply_code == 406
    assert "PRECONDITION_FAILED" in e.value.reply_text
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(q, auto_delete=True, arguments={"x-max-length": 10})
    assert e.value.reply_code == 406
    ex = name("redeclare-ex")
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="direct", auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(ex, exchange_type="fanout", auto_delete=True)
    assert e.value.reply_code == 406
    conn.channel().queue_delete(q)


def test_delete_if_empty_and_if_unused(conn):
    ch = conn.channel()
    q = name("del")
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    depth(ch, q)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_delete(q, if_empty=True)
    assert e.value.reply_code == 406
    ch = conn.channel()
    ok = ch.queue_delete(q)
    assert ok.method.message_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(q, passive=True)
    assert e.value.reply_code == 404


def test_purge(ch):
    q = name("purge")
    ch.queue_declare(q, exclusive=True)
    for i in range(7):
        ch.basic_publish("", q, b"p")
    assert depth(ch, q) == 7
    assert ch.queue_purge(q).method.message_count == 7
    assert depth(ch, q) == 0


# --- heartbeats -----------------------------------------------------------------------------


def test_heartbeats_keep_idle_connection_open():
    c = pika.BlockingConnection(params(heartbeat=2))
    try:
        assert c._impl.params.heartbeat == 2
        ch = c.channel()
        q = name("hb")
        ch.queue_declare(q, exclusive=True)
        deadline = time.monotonic() + 5.5
        while time.monotonic() < deadline:
            c.process_data_events(time_limit=0.2)
            c.sleep(0.1)
        assert c.is_open
        ch.basic_publish("", q, b"still-alive")
        assert get_body(ch, q)[2] == b"still-alive"
    finally:
        if c.is_open:
            c.close()


# --- TLS (run.sh starts an AMQPS listener with openssl-made certificates) -------------------

TLS_DIR = os.environ.get("WARREN_TLS_DIR")
AMQPS_PORT = os.environ.get("AMQPS_PORT")
needs_tls = pytest.mark.skipif(
    not (TLS_DIR and AMQPS_PORT), reason="no TLS listener (run.sh sets WARREN_TLS_DIR, AMQPS_PORT)"
)


def tls_params(credentials, client_cert=False):
    ctx = ssl.create_default_context(cafile=os.path.join(TLS_DIR, "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(os.path.join(TLS_DIR, "client.pem"), os.path.join(TLS_DIR, "client.key"))
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=int(AMQPS_PORT),
        credentials=credentials,
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        socket_timeout=5,
        connection_attempts=1,
        blocked_connection_timeout=10,
    )


def round_trip(c):
    ch = c.channel()
    ch.confirm_delivery()
    q = name("tls")
    ch.queue_declare(q, exclusive=True)
    body = os.urandom(300_000)  # several frames and TLS records
    ch.basic_publish("", q, body)
    assert get_body(ch, q)[2] == body


@needs_tls
def test_tls_plain_login():
    c = pika.BlockingConnection(tls_params(pika.PlainCredentials("guest", "guest")))
    try:
        round_trip(c)
    finally:
        c.close()


@needs_tls
def test_tls_external_login_with_client_certificate():
    # The client certificate's CN is "guest"; EXTERNAL needs no password.
    c = pika.BlockingConnection(tls_params(pika.credentials.ExternalCredentials(), client_cert=True))
    try:
        round_trip(c)
    finally:
        c.close()
