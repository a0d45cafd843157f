// amqplib against Warren: the core matrix (connection, exchanges and bindings, publish/get/
// consume/cancel, ack/nack/reject with requeue, error codes, heartbeats). amqplib has no
// transaction API, so tx.* is covered by the pika suite only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import {
  AMQP_URL, channel, connect, drain, getMsg, name, rejectsWithCode, sleep, waitFor,
} from '../lib/helpers.mjs';

const T = { timeout: 20_000 };

describe('amqplib core', () => {
  let conn;
  before(async () => {
    conn = await connect();
  });
  after(async () => {
    await conn.close();
  });

  test('connects with PLAIN and sees server capabilities', T, async () => {
    const props = conn.connection.serverProperties;
    assert.equal(props.product, 'Warren');
    assert.equal(props.capabilities.publisher_confirms, true);
    assert.equal(props.capabilities['basic.nack'], true);
    assert.equal(props.capabilities.consumer_cancel_notify, true);
  });

  test('wrong password is refused', T, async () => {
    const bad = AMQP_URL.replace('guest:guest@', 'guest:wrong@');
    await assert.rejects(amqp.connect(bad, { timeout: 5000 }), /ACCESS.REFUSED|403/);
  });

  test('direct exchange routes by key; unbind stops routing', T, async () => {
    const ch = await channel(conn);
    const ex = name('direct');
    const [qa, qb] = [name('qa'), name('qb')];
    await ch.assertExchange(ex, 'direct', { autoDelete: true, durable: false });
    await ch.assertQueue(qa, { exclusive: true });
    await ch.assertQueue(qb, { exclusive: true });
    await ch.bindQueue(qa, ex, 'a');
    await ch.bindQueue(qb, ex, 'b');
    ch.publish(ex, 'a', Buffer.from('to-a'));
    ch.publish(ex, 'b', Buffer.from('to-b'));
    ch.publish(ex, 'c', Buffer.from('nowhere'));
    assert.equal((await getMsg(ch, qa)).content.toString(), 'to-a');
    assert.equal((await getMsg(ch, qb)).content.toString(), 'to-b');
    await ch.unbindQueue(qa, ex, 'a');
    ch.publish(ex, 'a', Buffer.from('after-unbind'));
    ch.publish(ex, 'b', Buffer.from('marker'));
    assert.equal((await getMsg(ch, qb)).content.toString(), 'marker');
    assert.deepEqual(await drain(ch, qa), []);
    await ch.close();
  });

  test('fanout exchange copies to every bound queue', T, async () => {
    const ch = await channel(conn);
    const ex = name('fanout');
    await ch.assertExchange(ex, 'fanout', { autoDelete: true, durable: false });
    const qs = [name('f0'), name('f1'), name('f2')];
    for (const q of qs) {
      await ch.assertQueue(q, { exclusive: true });
      await ch.bindQueue(q, ex, '');
    }
    ch.publish(ex, 'any', Buffer.from('broadcast'));
    for (const q of qs) {
      const m = await getMsg(ch, q);
      assert.equal(m.content.toString(), 'broadcast');
      assert.equal(m.fields.exchange, ex);
      assert.equal(m.fields.routingKey, 'any');
    }
    await ch.close();
  });

  test('topic exchange wildcards', T, async () => {
    const ch = await channel(conn);
    const ex = name('topic');
    const [qs, qh] = [name('star'), name('hash')];
    await ch.assertExchange(ex, 'topic', { autoDelete: true, durable: false });
    await ch.assertQueue(qs, { exclusive: true });
    await ch.assertQueue(qh, { exclusive: true });
    await ch.bindQueue(qs, ex, 'stock.*.nyse');
    await ch.bindQueue(qh, ex, 'stock.#');
    for (const [k, b] of [['stock.ibm.nyse', '1'], ['stock.ibm', '2'], ['stock', '3'], ['bond.x.nyse', '4'],
      ['stock.a.b.nyse', '5'], ['stock.end.nyse', 'end']]) {
      ch.publish(ex, k, Buffer.from(b));
    }
    assert.deepEqual([(await getMsg(ch, qs)).content.toString(), (await getMsg(ch, qs)).content.toString()], ['1', 'end']);
    const hash = [];
    for (let i = 0; i < 5; i++) hash.push((await getMsg(ch, qh)).content.toString());
    assert.deepEqual(hash, ['1', '2', '3', '5', 'end']);
    assert.deepEqual(await drain(ch, qs), []);
    assert.deepEqual(await drain(ch, qh), []);
    await ch.close();
  });

  test('headers exchange x-match all/any', T, async () => {
    const ch = await channel(conn);
    const ex = name('headers');
    const [qall, qany] = [name('all'), name('any')];
    await ch.assertExchange(ex, 'headers', { autoDelete: true, durable: false });
    await ch.assertQueue(qall, { exclusive: true });
    await ch.assertQueue(qany, { exclusive: true });
    await ch.bindQueue(qall, ex, '', { 'x-match': 'all', format: 'pdf', type: 'report' });
    await ch.bindQueue(qany, ex, '', { 'x-match': 'any', format: 'pdf', type: 'log' });
    const pub = (b, headers) => ch.publish(ex, '', Buffer.from(b), { headers });
    pub('both', { format: 'pdf', type: 'report' });
    pub('format-only', { format: 'pdf' });
    pub('log', { type: 'log' });
    pub('none', { format: 'zip' });
    pub('end', { format: 'pdf', type: 'report' });
    const all = [];
    for (let i = 0; i < 2; i++) all.push((await getMsg(ch, qall)).content.toString());
    const any = [];
    for (let i = 0; i < 4; i++) any.push((await getMsg(ch, qany)).content.toString());
    assert.deepEqual(all, ['both', 'end']);
    assert.deepEqual(any, ['both', 'format-only', 'log', 'end']);
    assert.deepEqual(await drain(ch, qall), []);
    assert.deepEqual(await drain(ch, qany), []);
    await ch.close();
  });

  test('exchange-to-exchange binding', T, async () => {
    const ch = await channel(conn);
    const [src, dst, q] = [name('src'), name('dst'), name('e2e')];
    await ch.assertExchange(src, 'topic', { autoDelete: true, durable: false });
    await ch.assertExchange(dst, 'fanout', { autoDelete: true, durable: false });
    await ch.bindExchange(dst, src, 'a.#');
    await ch.assertQueue(q, { exclusive: true });
    await ch.bindQueue(q, dst, '');
    ch.publish(src, 'b.x', Buffer.from('skip'));
    ch.publish(src, 'a.x', Buffer.from('via-e2e'));
    const m = await getMsg(ch, q);
    assert.equal(m.content.toString(), 'via-e2e');
    assert.equal(m.fields.exchange, src);
    assert.deepEqual(await drain(ch, q), []);
    await ch.close();
  });

  test('publish and get with properties and a multi-frame body', T, async () => {
    const ch = await channel(conn);
    const q = name('props');
    const ok = await ch.assertQueue(q, { exclusive: true });
    assert.equal(ok.queue, q);
    assert.equal(ok.messageCount, 0);
    const body = Buffer.concat([Buffer.from('{"hello":"world"}'), Buffer.alloc(300_000, 7)]);
    ch.sendToQueue(q, body, {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { 'x-int': 42, 'x-str': 'hi', 'x-bool': true, 'x-list': [1, 'two'] },
      persistent: true,
      priority: 3,
      correlationId: 'corr-1',
      replyTo: 'somewhere',
      expiration: '60000',
      messageId: 'msg-1',
      timestamp: 1700000000,
      type: 'kind',
      userId: 'guest',
      appId: 'interop',
    });
    ch.sendToQueue(q, Buffer.from('second'));
    const m = await getMsg(ch, q);
    assert.ok(m.content.equals(body));
    assert.equal(m.fields.messageCount, 1);
    assert.equal(m.fields.redelivered, false);
    assert.equal(m.fields.routingKey, q);
    const p = m.properties;
    assert.equal(p.contentType, 'application/json');
    assert.equal(p.contentEncoding, 'utf-8');
    assert.deepEqual(p.headers, { 'x-int': 42, 'x-str': 'hi', 'x-bool': true, 'x-list': [1, 'two'] });
    assert.equal(p.deliveryMode, 2);
    assert.equal(p.priority, 3);
    assert.equal(p.correlationId, 'corr-1');
    assert.equal(p.replyTo, 'somewhere');
    assert.equal(p.expiration, '60000');
    assert.equal(p.messageId, 'msg-1');
    assert.equal(p.timestamp, 1700000000);
    assert.equal(p.type, 'kind');
    assert.equal(p.userId, 'guest');
    assert.equal(p.appId, 'interop');
    assert.equal((await getMsg(ch, q)).content.toString(), 'second');
    assert.equal(await ch.get(q), false);
    await ch.close();
  });

  test('consume, then cancel leaves later messages queued', T, async () => {
    const ch = await channel(conn);
    const q = name('consume');
    await ch.assertQueue(q, { exclusive: true });
    for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
    const got = [];
    const { consumerTag } = await ch.consume(q, (m) => {
      got.push([m.fields.consumerTag, m.fields.deliveryTag, m.content.toString()]);
      ch.ack(m);
    }, { consumerTag: 'node-ctag' });
    assert.equal(consumerTag, 'node-ctag');
    await waitFor('5 deliveries', () => got.length === 5);
    assert.deepEqual(got.map((g) => g[2]), ['m0', 'm1', 'm2', 'm3', 'm4']);
    assert.deepEqual(got.map((g) => g[1]), [1, 2, 3, 4, 5]);
    assert.ok(got.every((g) => g[0] === 'node-ctag'));
    assert.equal((await ch.checkQueue(q)).consumerCount, 1);
    await ch.cancel(consumerTag);
    assert.equal((await ch.checkQueue(q)).consumerCount, 0);
    ch.sendToQueue(q, Buffer.from('after-cancel'));
    await sleep(200);
    assert.equal(got.length, 5);
    assert.equal((await ch.checkQueue(q)).messageCount, 1);
    await ch.close();
  });

  test('server-named queue', T, async () => {
    const ch = await channel(conn);
    const { queue } = await ch.assertQueue('', { exclusive: true });
    assert.match(queue, /^amq\.gen-/);
    ch.sendToQueue(queue, Buffer.from('gen'));
    assert.equal((await getMsg(ch, queue)).content.toString(), 'gen');
    await ch.close();
  });

  test('nack and reject with requeue set redelivered', T, async () => {
    const ch = await channel(conn);
    const q = name('requeue');
    await ch.assertQueue(q, { exclusive: true });
    ch.sendToQueue(q, Buffer.from('again'));
    const m1 = await getMsg(ch, q, { noAck: false });
    assert.equal(m1.fields.redelivered, false);
    ch.nack(m1, false, true);
    const m2 = await getMsg(ch, q, { noAck: false });
    assert.equal(m2.content.toString(), 'again');
    assert.equal(m2.fields.redelivered, true);
    ch.reject(m2, true);
    const m3 = await getMsg(ch, q, { noAck: false });
    assert.equal(m3.fields.redelivered, true);
    ch.reject(m3, false);
    assert.equal(await ch.get(q), false);
    assert.equal((await ch.checkQueue(q)).messageCount, 0);
    // nack allUpTo, then ackAll
    for (let i = 0; i < 4; i++) ch.sendToQueue(q, Buffer.from(`${i}`));
    const ms = [];
    for (let i = 0; i < 4; i++) ms.push(await getMsg(ch, q, { noAck: false }));
    ch.nack(ms[2], true, true);
    assert.equal((await ch.checkQueue(q)).messageCount, 3);
    const again = [];
    for (let i = 0; i < 3; i++) again.push(await getMsg(ch, q, { noAck: false }));
    assert.deepEqual(again.map((m) => m.content.toString()).sort(), ['0', '1', '2']);
    assert.ok(again.every((m) => m.fields.redelivered));
    ch.ackAll();
    await ch.close();
    const ch2 = await channel(conn);
    assert.equal((await ch2.checkQueue(q)).messageCount, 0);
    await ch2.close();
  });

  test('unacked messages are requeued when the channel closes', T, async () => {
    const ch = await channel(conn);
    const q = name('close-requeue');
    await ch.assertQueue(q, { exclusive: true });
    ch.sendToQueue(q, Buffer.from('unacked'));
    await getMsg(ch, q, { noAck: false });
    await ch.close();
    const ch2 = await channel(conn);
    const m = await getMsg(ch2, q);
    assert.equal(m.content.toString(), 'unacked');
    assert.equal(m.fields.redelivered, true);
    await ch2.close();
  });

  test('mandatory unroutable publish is returned', T, async () => {
    const ch = await channel(conn);
    const returned = [];
    ch.on('return', (m) => returned.push(m));
    const key = name('nowhere');
    ch.publish('', key, Buffer.from('bounce'), { mandatory: true });
    await waitFor('basic.return', () => returned.length === 1);
    assert.equal(returned[0].fields.replyCode, 312);
    assert.equal(returned[0].fields.replyText, 'NO_ROUTE');
    assert.equal(returned[0].fields.routingKey, key);
    assert.equal(returned[0].content.toString(), 'bounce');
    await ch.close();
  });

  test('error codes: 404 passive, 405 exclusive, 406 inequivalent and unknown tag', T, async () => {
    let ch = await channel(conn);
    const e404 = await rejectsWithCode(ch.checkQueue(name('missing')), 404);
    assert.match(e404.message, /NOT_FOUND/);
    ch = await channel(conn);
    await rejectsWithCode(ch.checkExchange(name('missing-ex')), 404);

    ch = await channel(conn);
    const excl = name('exclusive');
    await ch.assertQueue(excl, { exclusive: true });
    const other = await connect();
    try {
      const och = await channel(other);
      const e405 = await rejectsWithCode(och.consume(excl, () => {}), 405);
      assert.match(e405.message, /RESOURCE_LOCKED/);
    } finally {
      await other.close();
    }

    const q = name('ineq');
    await ch.assertQueue(q, { durable: false, autoDelete: true });
    const e406 = await rejectsWithCode(ch.assertQueue(q, { durable: true }), 406);
    assert.match(e406.message, /PRECONDITION_FAILED/);

    ch = await channel(conn);
    const ex = name('ineq-ex');
    await ch.assertExchange(ex, 'direct', { autoDelete: true, durable: false });
    await rejectsWithCode(ch.assertExchange(ex, 'fanout', { autoDelete: true, durable: false }), 406);

    ch = await channel(conn);
    const closed = new Promise((resolve) => ch.once('error', resolve));
    ch.ack({ fields: { deliveryTag: 999 } });
    const err = await closed;
    assert.equal(err.code, 406);

    ch = await channel(conn);
    ch.publish(name('no-ex'), 'k', Buffer.from('x'));
    await rejectsWithCode(ch.checkQueue(q), 404);
    ch = await channel(conn);
    await ch.deleteQueue(q);
  });

  test('purge and delete report counts', T, async () => {
    const ch = await channel(conn);
    const q = name('purge');
    await ch.assertQueue(q);
    for (let i = 0; i < 7; i++) ch.sendToQueue(q, Buffer.from('p'));
    await waitFor('7 ready', async () => (await ch.checkQueue(q)).messageCount === 7);
    assert.equal((await ch.purgeQueue(q)).messageCount, 7);
    ch.sendToQueue(q, Buffer.from('p'));
    await waitFor('1 ready', async () => (await ch.checkQueue(q)).messageCount === 1);
    assert.equal((await ch.deleteQueue(q)).messageCount, 1);
    await rejectsWithCode(ch.checkQueue(q), 404);
  });

  test('heartbeats keep an idle connection open', { timeout: 30_000 }, async () => {
    const hb = await connect('?heartbeat=2');
    try {
      assert.equal(hb.connection.heartbeat, 2);
      let closed = false;
      hb.on('close', () => {
        closed = true;
      });
      await sleep(5500);
      assert.equal(closed, false);
      const ch = await channel(hb);
      const q = name('hb');
      await ch.assertQueue(q, { exclusive: true });
      ch.sendToQueue(q, Buffer.from('still-alive'));
      assert.equal((await getMsg(ch, q)).content.toString(), 'still-alive');
    } finally {
      await hb.close();
    }
  });
});
