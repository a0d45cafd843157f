// amqplib against Warren: ConfirmChannel, prefetch, assertQueue with deadLetterExchange /
// messageTtl / maxLength, checkQueue on a missing queue.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { channel, connect, drain, getMsg, name, rejectsWithCode, sleep, waitFor } from '../lib/helpers.mjs';

const T = { timeout: 20_000 };

describe('amqplib features', () => {
  let conn;
  before(async () => {
    conn = await connect();
  });
  after(async () => {
    await conn.close();
  });

  test('ConfirmChannel: per-message callbacks and waitForConfirms', T, async () => {
    const ch = await channel(conn, true);
    const q = name('confirm');
    await ch.assertQueue(q, { exclusive: true });
    const acks = [];
    for (let i = 0; i < 100; i++) {
      ch.sendToQueue(q, Buffer.from(`c${i}`), { persistent: true }, (err) => acks.push(err ?? 'ok'));
    }
    await ch.waitForConfirms();
    assert.equal(acks.length, 100);
    assert.ok(acks.every((a) => a === 'ok'));
    assert.equal((await ch.checkQueue(q)).messageCount, 100);
    // Unroutable mandatory publish: returned, then confirmed.
    const returned = [];
    ch.on('return', (m) => returned.push(m.content.toString()));
    let confirmed = null;
    ch.publish('', name('missing'), Buffer.from('bounce'), { mandatory: true }, (err) => {
      confirmed = err ?? 'ok';
    });
    await ch.waitForConfirms();
    assert.equal(confirmed, 'ok');
    await waitFor('basic.return', () => returned.length === 1);
    assert.deepEqual(returned, ['bounce']);
    await ch.close();
  });

  test('ConfirmChannel: publish to a missing exchange closes the channel with 404', T, async () => {
    const ch = await channel(conn, true);
    const closed = new Promise((resolve) => ch.once('error', resolve));
    let cbErr = null;
    ch.publish(name('no-such-ex'), 'k', Buffer.from('x'), {}, (err) => {
      cbErr = err;
    });
    const err = await closed;
    assert.equal(err.code, 404);
    assert.match(err.message, /NOT_FOUND/);
    await waitFor('confirm callback rejected', () => cbErr !== null);
  });

  test('prefetch limits unacked deliveries per consumer', T, async () => {
    const ch = await channel(conn);
    const q = name('prefetch');
    await ch.assertQueue(q, { exclusive: true });
    for (let i = 0; i < 10; i++) ch.sendToQueue(q, Buffer.from(`${i}`));
    await ch.prefetch(3);
    const got = [];
    await ch.consume(q, (m) => got.push(m));
    await sleep(500);
    assert.deepEqual(got.map((m) => m.content.toString()), ['0', '1', '2']);
    ch.ack(got[0]);
    await waitFor('4th delivery', () => got.length === 4);
    await sleep(300);
    assert.equal(got.length, 4);
    ch.ack(got[3], true);
    await waitFor('7 deliveries', () => got.length === 7);
    await sleep(300);
    assert.deepEqual(got.map((m) => m.content.toString()), ['0', '1', '2', '3', '4', '5', '6']);
    await ch.close();
  });

  test('assertQueue deadLetterExchange + messageTtl: expired messages are dead-lettered', T, async () => {
    const ch = await channel(conn);
    const [dlx, dlq, q] = [name('dlx'), name('dlq'), name('ttl')];
    await ch.assertExchange(dlx, 'fanout', { autoDelete: true, durable: false });
    await ch.assertQueue(dlq, { exclusive: true });
    await ch.bindQueue(dlq, dlx, '');
    const ok = await ch.assertQueue(q, { exclusive: true, deadLetterExchange: dlx, messageTtl: 200 });
    assert.equal(ok.queue, q);
    // Re-asserting with the same options is fine; different ones are 406.
    await ch.assertQueue(q, { exclusive: true, deadLetterExchange: dlx, messageTtl: 200 });
    ch.sendToQueue(q, Buffer.from('short-lived'), { headers: { app: 'node' } });
    const m = await getMsg(ch, dlq, { ms: 5000 });
    assert.equal(m.content.toString(), 'short-lived');
    const death = m.properties.headers['x-death'];
    assert.equal(death.length, 1);
    assert.equal(death[0].reason, 'expired');
    assert.equal(death[0].queue, q);
    assert.equal(death[0].count, 1);
    assert.equal(death[0].exchange, '');
    assert.deepEqual(death[0]['routing-keys'], [q]);
    assert.equal(m.properties.headers.app, 'node');
    assert.equal((await ch.checkQueue(q)).messageCount, 0);
    const ch2 = await channel(conn);
    await rejectsWithCode(ch2.assertQueue(q, { exclusive: true, deadLetterExchange: dlx, messageTtl: 999 }), 406);
    await ch.close();
  });

  test('assertQueue maxLength drops the head; overflow dead-letters with reason maxlen', T, async () => {
    const ch = await channel(conn);
    const [dlx, dlq, q] = [name('dlx-ml'), name('dlq-ml'), name('maxlen')];
    await ch.assertExchange(dlx, 'direct', { autoDelete: true, durable: false });
    await ch.assertQueue(dlq, { exclusive: true });
    await ch.bindQueue(dlq, dlx, 'dead');
    await ch.assertQueue(q, {
      exclusive: true, maxLength: 3, deadLetterExchange: dlx, deadLetterRoutingKey: 'dead',
    });
    for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`${i}`));
    await waitFor('3 ready', async () => (await ch.checkQueue(q)).messageCount === 3);
    assert.deepEqual(await drain(ch, q), ['2', '3', '4']);
    const dead = [await getMsg(ch, dlq), await getMsg(ch, dlq)];
    assert.deepEqual(dead.map((m) => m.content.toString()), ['0', '1']);
    for (const m of dead) {
      assert.equal(m.fields.routingKey, 'dead');
      assert.equal(m.properties.headers['x-death'][0].reason, 'maxlen');
      assert.equal(m.properties.headers['x-first-death-reason'], 'maxlen');
    }
    await ch.close();
  });

  test('checkQueue on a missing queue rejects with 404 and closes only the channel', T, async () => {
    const ch = await channel(conn);
    const err = await rejectsWithCode(ch.checkQueue(name('missing')), 404);
    assert.match(err.message, /NOT_FOUND - no queue/);
    // The connection survives.
    const ch2 = await channel(conn);
    const { queue } = await ch2.assertQueue('', { exclusive: true });
    assert.equal((await ch2.checkQueue(queue)).messageCount, 0);
    await ch2.close();
  });
});
