// Shared helpers for the amqplib suites: connections, unique names, polling with deadlines.
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';

export const name = (prefix) => `interop.node.${prefix}.${randomBytes(4).toString('hex')}`;

export { sleep };

/** Opens a connection; every channel it makes swallows 'error' (tests assert on rejections). */
export async function connect(query = '') {
  const conn = await amqp.connect(AMQP_URL + query, { timeout: 10_000 });
  conn.on('error', () => {});
  return conn;
}

export async function channel(conn, confirm = false) {
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  ch.on('error', () => {});
  return ch;
}

/** basic.get, polling until a message arrives or `ms` passes. */
export async function getMsg(ch, queue, { noAck = true, ms = 5000 } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = await ch.get(queue, { noAck });
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no message on ${queue} within ${ms}ms`);
    await sleep(20);
  }
}

export async function drain(ch, queue) {
  const bodies = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (!m) return bodies;
    bodies.push(m.content.toString());
  }
}

export async function waitFor(what, cond, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Asserts `promise` rejects with a channel close carrying `code`. */
export async function rejectsWithCode(promise, code) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  if (!err) throw new Error(`expected a channel close with ${code}, got success`);
  if (err.code !== code) throw new Error(`expected reply code ${code}, got ${err.code}: ${err.message}`);
  return err;
}
