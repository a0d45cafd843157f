"""aio-pika against Warren: the protocol details of issue 15 as aio-pika users meet them —
the RPC pattern's close() (which unbinds a queue and exchange that auto-delete already
removed), Decimal queue arguments, and closing while publishes are in flight."""

import asyncio
import decimal
import os
import uuid

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.patterns import RPC

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
TIMEOUT = 10


def name(prefix):
    return f"interop.aiopika.{prefix}.{uuid.uuid4().hex[:8]}"


async def connect():
    return await asyncio.wait_for(aio_pika.connect(AMQP_URL, timeout=TIMEOUT), TIMEOUT)


async def double(*, x):
    return x * 2


async def test_rpc_pattern_call_and_close():
    conn = await connect()
    try:
        ch = await conn.channel()
        rpc = await RPC.create(ch)
        method = name("double")
        await rpc.register(method, double, auto_delete=True)
        assert await asyncio.wait_for(rpc.call(method, kwargs={"x": 21}), TIMEOUT) == 42
        # close() cancels its consumer (the auto-delete result queue and the auto-delete DLX
        # exchange go), then unbinds them: RabbitMQ answers unbind-ok, so must Warren.
        await asyncio.wait_for(rpc.close(), TIMEOUT)
        assert not ch.is_closed
        # The channel is still usable.
        q = await ch.declare_queue(name("after"), auto_delete=True)
        await q.delete()
    finally:
        await conn.close()


async def test_decimal_delayed_retry_multiplier():
    conn = await connect()
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(
            name("retry"),
            auto_delete=True,
            arguments={
                "x-delayed-retry-type": "all",
                "x-delayed-retry-min": 50,
                "x-delayed-retry-multiplier": decimal.Decimal("2.0"),
            },
        )
        await q.delete()
        ch = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as e:
            await ch.declare_queue(name("bad"), arguments={"x-message-ttl": decimal.Decimal("2.5")})
        assert "{value_not_integral,2.5}" in str(e.value)
    finally:
        await conn.close()


async def test_close_while_publishing():
    conn = await connect()
    ch = await conn.channel()
    q = await ch.declare_queue("", exclusive=True)
    body = b"x" * 4096
    # Publishes not awaited: some are still being written when close() goes out.
    pending = [
        asyncio.ensure_future(ch.default_exchange.publish(aio_pika.Message(body), routing_key=q.name))
        for _ in range(2000)
    ]
    await asyncio.wait_for(conn.close(), TIMEOUT)
    assert conn.is_closed
    await asyncio.gather(*pending, return_exceptions=True)
