// amqplib against Warren: protocol details of issue 15 as RabbitMQ 3.10 behaves — closing a
// connection while publishes are still queued (amqplib sends connection.close on channel 0
// ahead of them: the broker must answer close-ok and drain, not reset the socket, which made
// the client's next write fail with EPIPE and its close callback never fire), idempotent
// unbind, the default exchange refusing declares.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { AMQP_URL, channel, connect, name, rejectsWithCode, sleep } from '../lib/helpers.mjs';

const T = { timeout: 20_000 };

describe('amqplib protocol details', () => {
  test('close while publishes are still queued: close-ok, close event, no EPIPE', T, async () => {
    for (let round = 0; round < 3; round++) {
      const conn = await amqp.connect(AMQP_URL, { timeout: 10_000 });
      const errors = [];
      conn.on('error', (e) => errors.push(e));
      const closed = new Promise((resolve) => conn.once('close', resolve));
      const ch = await conn.createChannel();
      ch.on('error', (e) => errors.push(e));
      const q = name('close-burst');
      await ch.assertQueue(q, { exclusive: true });
      const body = Buffer.alloc(4096, 120);
      for (let i = 0; i < 5000; i++) ch.sendToQueue(q, body);
      // close() resolves on close-ok; a reset socket never delivers it (and leaves nothing
      // for the event loop to wait on), hence the explicit deadline.
      const deadline = sleep(5000).then(() => 'timed out');
      const outcome = await Promise.race([conn.close().then(() => closed).then(() => 'closed'), deadline]);
      assert.deepEqual(errors.map(String), [], `round ${round}: errors`);
      assert.equal(outcome, 'closed', `round ${round}: close-ok and the close event`);
    }
  });

  test('unbind of a queue or from an exchange that is gone answers unbind-ok', T, async () => {
    const conn = await connect();
    try {
      const ch = await channel(conn);
      const ex = name('gone-x');
      const q = name('gone-q');
      await ch.assertExchange(ex, 'direct', { autoDelete: true, durable: false });
      await ch.assertQueue(q, { autoDelete: true, durable: false });
      await ch.bindQueue(q, ex, 'k');
      const { consumerTag } = await ch.consume(q, () => {});
      await ch.cancel(consumerTag); // auto-delete: the queue goes, then the exchange
      await ch.unbindQueue(q, ex, 'k');
      await ch.unbindQueue(q, 'amq.direct', 'k');
      await ch.unbindExchange(ex, 'amq.fanout', 'k');
      // The queue really was gone (and the unbinds left the channel open to ask).
      await rejectsWithCode(ch.checkQueue(q), 404);
    } finally {
      await conn.close();
    }
  });

  test('declaring the default exchange is refused with 403, passive or not', T, async () => {
    const conn = await connect();
    try {
      for (const declare of [(ch) => ch.checkExchange(''), (ch) => ch.assertExchange('', 'direct')]) {
        const ch = await channel(conn);
        const err = await rejectsWithCode(declare(ch), 403);
        assert.match(err.message, /ACCESS_REFUSED - operation not permitted on the default exchange/);
      }
    } finally {
      await conn.close();
    }
  });
});
