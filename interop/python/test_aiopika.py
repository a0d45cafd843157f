"""aio-pika against Warren: RPC (with an exclusive reply queue, and with RabbitMQ's direct
reply-to pseudo-queue) and a dead-letter round trip reading `x-death`."""

import asyncio
import os
import uuid

import aio_pika
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
TIMEOUT = 10


def name(prefix):
    return f"interop.aiopika.{prefix}.{uuid.uuid4().hex[:8]}"


async def connect():
    return await asyncio.wait_for(aio_pika.connect(AMQP_URL, timeout=TIMEOUT), TIMEOUT)


async def start_rpc_server(conn, queue_name, seen_reply_to):
    """A server that answers `n` with `n * 2`, publishing to the request's reply_to."""
    ch = await conn.channel()
    queue = await ch.declare_queue(queue_name, exclusive=True)

    async def on_request(message: aio_pika.abc.AbstractIncomingMessage):
        async with message.process():
            seen_reply_to.append(message.reply_to)
            n = int(message.body)
            await ch.default_exchange.publish(
                aio_pika.Message(
                    str(n * 2).encode(),
                    correlation_id=message.correlation_id,
                    headers={"x-served-by": "interop"},
                ),
                routing_key=message.reply_to,
            )

    await queue.consume(on_request)
    return ch


async def rpc_calls(ch, rpc_queue, reply_queue_name, reply_queue, numbers):
    futures = {}
    loop = asyncio.get_running_loop()

    async def on_response(message: aio_pika.abc.AbstractIncomingMessage):
        fut = futures.get(message.correlation_id)
        if fut is not None and not fut.done():
            fut.set_result((message.body, message.headers))

    await reply_queue.consume(on_response, no_ack=True)
    for n in numbers:
        corr = uuid.uuid4().hex
        futures[corr] = loop.create_future()
        await ch.default_exchange.publish(
            aio_pika.Message(str(n).encode(), correlation_id=corr, reply_to=reply_queue_name),
            routing_key=rpc_queue,
        )
    return await asyncio.wait_for(asyncio.gather(*futures.values()), TIMEOUT)


async def test_rpc_with_exclusive_reply_queue():
    server_conn, client_conn = await connect(), await connect()
    try:
        rpc_queue = name("rpc")
        seen = []
        await start_rpc_server(server_conn, rpc_queue, seen)
        ch = await client_conn.channel()
        reply_queue = await ch.declare_queue("", exclusive=True)
        assert reply_queue.name.startswith("amq.gen-")
        results = await rpc_calls(ch, rpc_queue, reply_queue.name, reply_queue, range(10))
        assert [body for body, _ in results] == [str(n * 2).encode() for n in range(10)]
        assert all(h.get("x-served-by") == "interop" for _, h in results)
        assert seen == [reply_queue.name] * 10
    finally:
        await client_conn.close()
        await server_conn.close()


async def test_rpc_with_direct_reply_to():
    server_conn, client_conn = await connect(), await connect()
    try:
        rpc_queue = name("rpc-direct")
        seen = []
        await start_rpc_server(server_conn, rpc_queue, seen)
        ch = await client_conn.channel()
        # The pseudo-queue is never declared; consuming from it (no-ack) enables direct reply-to.
        reply_queue = await ch.get_queue("amq.rabbitmq.reply-to", ensure=False)
        results = await rpc_calls(ch, rpc_queue, "amq.rabbitmq.reply-to", reply_queue, range(5))
        assert [body for body, _ in results] == [str(n * 2).encode() for n in range(5)]
        assert all(h.get("x-served-by") == "interop" for _, h in results)
        # The broker rewrites reply_to to a per-channel routable name.
        assert len(seen) == 5
        assert all(r.startswith("amq.rabbitmq.reply-to.") for r in seen), seen
    finally:
        await client_conn.close()
        await server_conn.close()


async def test_dead_letter_round_trip_x_death():
    conn = await connect()
    try:
        ch = await conn.channel()
        src_ex_name, dlx_name = name("src-ex"), name("dlx")
        work_name, dlq_name = name("work"), name("dlq")
        src_ex = await ch.declare_exchange(src_ex_name, aio_pika.ExchangeType.DIRECT, auto_delete=True)
        dlx = await ch.declare_exchange(dlx_name, aio_pika.ExchangeType.FANOUT, auto_delete=True)
        dlq = await ch.declare_queue(dlq_name, exclusive=True)
        await dlq.bind(dlx)
        work = await ch.declare_queue(
            work_name, exclusive=True, arguments={"x-dead-letter-exchange": dlx_name}
        )
        await work.bind(src_ex, routing_key="work.rk")
        await src_ex.publish(
            aio_pika.Message(b"poison", headers={"app": "interop"}, message_id="m-1"),
            routing_key="work.rk",
        )

        msg = await asyncio.wait_for(_get(work), TIMEOUT)
        assert msg.body == b"poison"
        await msg.reject(requeue=False)

        async with dlq.iterator() as it:
            dead = await asyncio.wait_for(it.__anext__(), TIMEOUT)
            async with dead.process():
                assert dead.body == b"poison"
                assert dead.message_id == "m-1"
                assert dead.headers["app"] == "interop"
                deaths = dead.headers["x-death"]
                assert isinstance(deaths, list) and len(deaths) == 1
                d = deaths[0]
                assert d["count"] == 1
                assert d["reason"] == "rejected"
                assert d["queue"] == work_name
                assert d["exchange"] == src_ex_name
                assert list(d["routing-keys"]) == ["work.rk"]
                assert "time" in d
                assert dead.headers["x-first-death-reason"] == "rejected"
                assert dead.headers["x-first-death-queue"] == work_name
                assert dead.headers["x-first-death-exchange"] == src_ex_name
                # Routed through the fanout DLX with the original routing key.
                assert dead.exchange == dlx_name
                assert dead.routing_key == "work.rk"
        assert (await work.declare()).message_count == 0
    finally:
        await conn.close()


async def _get(queue):
    while True:
        msg = await queue.get(fail=False)
        if msg is not None:
            return msg
        await asyncio.sleep(0.02)
