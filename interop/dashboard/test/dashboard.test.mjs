// Warren's management UI (GET /) in headless Chromium — Debian's `chromium` package, driven by
// playwright-core over the DevTools protocol (no browser download). The page loads without a
// browser prompt and shows its login form; a wrong password is refused on the form; after
// logging in through it the test sees its queues, clicks "move back" on a dead-letter queue,
// and on a queue's own page publishes a message, gets it and purges the queue, checking each
// step through the API; a queue name full of markup stays text; the test's own AMQP
// connection shows on the connections page (its channel on the channels page) and is closed
// from there; a vhost and a policy added through the forms appear in a definitions export
// (a download), and an imported queue exists under that policy. Needs WARREN_HTTP_PORT (WARREN_AMQP_PORT: default from /api/overview's
// listeners); CHROMIUM may name the browser (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import net from "node:net";
import { readFile } from "node:fs/promises";

const PORT = process.env.WARREN_HTTP_PORT;
// The AMQP port, for the test's own connection (from /api/overview's listeners if unset).
let AMQP_PORT = process.env.WARREN_AMQP_PORT;
if (!PORT) throw new Error("WARREN_HTTP_PORT must be set");
const BASE = `http://127.0.0.1:${PORT}`;
const AUTH = "Basic " + Buffer.from("guest:guest").toString("base64");
const SUFFIX = `${process.pid}-${Date.now()}`;
const WORK = `dash.work.${SUFFIX}`;
const DLQ = `dash.dlq.${SUFFIX}`;
// A queue name that would run script if the page put it into HTML unescaped.
const PAGE_Q = `dash.page.<img src=x onerror="window.__xss=1">&'.${SUFFIX}`;
const N = 3;

async function api(method, path, body) {
  const r = await fetch(BASE + path, {
    method,
    headers: { authorization: AUTH, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function waitFor(what, cond, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const depth = async (q) => (await api("GET", `/api/queues/%2F/${encodeURIComponent(q)}`)).messages_ready;

// ---- a minimal AMQP 0-9-1 client: enough to open a connection and a channel, and to see
// the broker close them (no AMQP library in this suite's dependencies).

const shortstr = (s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
const longstr = (s) => {
  const b = Buffer.from(s);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(b.length);
  return Buffer.concat([n, b]);
};
function method(channel, cls, m, args) {
  const payload = Buffer.concat([Buffer.from([cls >> 8, cls & 255, m >> 8, m & 255]), args]);
  const head = Buffer.alloc(7);
  head.writeUInt8(1, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([0xce])]);
}

/** Opens an AMQP connection named `name` as guest, with channel 1 open. */
async function amqpConnect(name) {
  const sock = net.connect(Number(AMQP_PORT), "127.0.0.1");
  let buf = Buffer.alloc(0);
  const methods = []; // [class, method, args]
  let wake = () => {};
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32BE(3)) {
      const size = buf.readUInt32BE(3);
      if (buf[0] === 1) methods.push([buf.readUInt16BE(7), buf.readUInt16BE(9), buf.subarray(11, 7 + size)]);
      buf = buf.subarray(8 + size);
    }
    wake();
  });
  let ended = false;
  sock.on("close", () => {
    ended = true;
    wake();
  });
  sock.on("error", () => {});
  const next = async (cls, m) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const i = methods.findIndex(([c, mm]) => c === cls && mm === m);
      if (i >= 0) return methods.splice(i, 1)[0][2];
      if (ended || Date.now() > deadline) throw new Error(`no AMQP method ${cls}.${m}`);
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  };
  await new Promise((r) => sock.once("connect", r));
  sock.write(Buffer.from("AMQP\x00\x00\x09\x01", "latin1"));
  await next(10, 10); // Start
  const props = Buffer.concat([shortstr("connection_name"), Buffer.from("S"), longstr(name)]);
  const table = Buffer.concat([Buffer.from([0, 0, 0, props.length]), props]);
  sock.write(method(0, 10, 11, Buffer.concat([table, shortstr("PLAIN"), longstr("\0guest\0guest"), shortstr("en_US")])));
  const tune = await next(10, 30);
  sock.write(method(0, 10, 31, Buffer.concat([tune.subarray(0, 6), Buffer.from([0, 0])]))); // heartbeat 0
  sock.write(method(0, 10, 40, Buffer.concat([shortstr("/"), shortstr(""), Buffer.from([0])])));
  await next(10, 41);
  sock.write(method(1, 20, 10, shortstr("")));
  await next(20, 11);
  return { sock, next, closed: () => ended };
}

let browser;

before(async () => {
  AMQP_PORT ??= (await api("GET", "/api/overview")).listeners.find((l) => l.protocol === "amqp").port;
  // A work queue dead-lettering into a DLQ, through the default exchange.
  await api("PUT", `/api/queues/%2F/${encodeURIComponent(DLQ)}`, { durable: false });
  await api("PUT", `/api/queues/%2F/${encodeURIComponent(WORK)}`, {
    durable: false,
    arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": DLQ },
  });
  for (let i = 0; i < N; i++) {
    const r = await api("POST", "/api/exchanges/%2F/amq.default/publish", {
      properties: { headers: { n: i } },
      routing_key: WORK,
      payload: `job-${i}`,
      payload_encoding: "string",
    });
    assert.equal(r.routed, true);
  }
  // Reject them all without requeue: they die into the DLQ.
  const got = await api("POST", `/api/queues/%2F/${encodeURIComponent(WORK)}/get`, {
    count: N,
    ackmode: "reject_requeue_false",
    encoding: "auto",
  });
  assert.equal(got.length, N);
  await waitFor(`${N} messages in the DLQ`, async () => (await depth(DLQ)) === N);
  await api("PUT", `/api/queues/%2F/${encodeURIComponent(PAGE_Q)}`, { durable: false });

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // No --user-data-dir: playwright starts the browser on a fresh temporary profile of its
      // own (and refuses the flag outside launchPersistentContext).
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const q of [WORK, DLQ, PAGE_Q]) {
    await api("DELETE", `/api/queues/%2F/${encodeURIComponent(q)}`).catch(() => {});
  }
});

/** A page with script errors and dialogs (accepted) recorded. */
async function newPage(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.dialogs = [];
  page.on("dialog", async (d) => {
    page.dialogs.push(d.message());
    await d.accept();
  });
  return page;
}

/** Opens the UI and logs in through its form. */
async function login(page, user = "guest", pass = "guest") {
  const r = await page.goto(BASE + "/");
  assert.equal(r.status(), 200);
  await page.locator("#login").waitFor();
  await page.fill("#login-user", user);
  await page.fill("#login-pass", pass);
  await page.click("#login button[type=submit]");
}

test("without credentials the page shows its login form, no prompt and no data", async () => {
  // No httpCredentials: a WWW-Authenticate challenge anywhere would fail the navigation
  // (ERR_INVALID_AUTH_CREDENTIALS) or leave a request hanging on a prompt.
  const ctx = await browser.newContext();
  try {
    const page = await newPage(ctx);
    const r = await page.goto(BASE + "/", { timeout: 15_000 });
    assert.equal(r.status(), 200);
    assert.equal(await page.title(), "Warren");
    await page.locator("#login").waitFor();
    assert.equal(await page.locator("#nav").isVisible(), false);
    assert.equal(await page.locator("tr[data-queue]").count(), 0, "no data before logging in");

    // A wrong password: an error on the form, still logged out, nothing stored.
    await page.fill("#login-user", "guest");
    await page.fill("#login-pass", "wrong");
    await page.click("#login button[type=submit]");
    await page.waitForFunction(() => /Login failed/.test(document.getElementById("login-error").textContent));
    assert.equal(await page.locator("#login").isVisible(), true);
    assert.equal(await page.locator("#app").isVisible(), false);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(page.errors, [], "no script errors on the page");
  } finally {
    await ctx.close();
  }
});

test("after logging in the queue list shows the queues and moves a DLQ back", { timeout: 45_000 }, async () => {
  const ctx = await browser.newContext();
  try {
    const page = await newPage(ctx);
    const { errors, dialogs } = page;
    await login(page);
    // The overview comes first; its tiles are filled from /api/overview.
    await page.locator("#nav").waitFor();
    await page.waitForFunction(() => /\d/.test(document.getElementById("queues")?.textContent ?? ""));
    assert.equal((await page.locator("#who-name").textContent()).trim(), "guest");
    // Two charts (rates, queued messages) and, for this administrator, the node's state.
    assert.equal(await page.locator("#charts svg").count(), 2);
    await page.waitForFunction(() => document.querySelector('#node [data-stat="Memory alarm"]')?.textContent === "no");
    await page.click('#nav a[href="#/queues"]');

    // Both queues are listed; the DLQ is marked and carries the button, the work queue not.
    const work = page.locator(`tr[data-queue="${WORK}"]`);
    const dlq = page.locator(`tr[data-queue="${DLQ}"]`);
    await work.waitFor();
    await dlq.waitFor();
    assert.match((await dlq.getAttribute("class")) ?? "", /\bdlq\b/);
    assert.doesNotMatch((await work.getAttribute("class")) ?? "", /\bdlq\b/);
    assert.equal(await work.locator("button.move").count(), 0);
    assert.equal((await dlq.locator("td").nth(2).textContent()).trim(), String(N), "DLQ depth shown");
    // Filtering narrows the list; sorting by a header click keeps both rows.
    await page.fill("#queue-filter", DLQ);
    await page.waitForFunction((q) => document.querySelectorAll("tr[data-queue]").length === 1, DLQ);
    await dlq.waitFor();
    await page.fill("#queue-filter", `dash.`);
    await work.waitFor();
    await page.click('th[data-col="ready"]');
    await page.waitForFunction(() => document.querySelector('th[data-col="ready"]').dataset.dir === "asc");
    await dlq.waitFor();

    await dlq.locator("button.move").click();
    await page.waitForFunction(
      (n) => document.getElementById("msg").textContent.includes(`moved ${n} message(s)`),
      N,
    );
    assert.equal(dialogs.length, 1, "a confirmation was asked for");
    assert.match(dialogs[0], new RegExp(`Move all messages in ${DLQ.replace(/\./g, "\\.")}`));

    // The API agrees: the DLQ is empty and the messages are back in the work queue.
    await waitFor("messages back in the work queue", async () => (await depth(WORK)) === N);
    assert.equal(await depth(DLQ), 0);
    const back = await api("POST", `/api/queues/%2F/${encodeURIComponent(WORK)}/get`, {
      count: N,
      ackmode: "ack_requeue_true",
      encoding: "auto",
    });
    assert.deepEqual(back.map((m) => m.payload).sort(), ["job-0", "job-1", "job-2"]);
    // And the page's next refresh shows the empty DLQ.
    await page.waitForFunction(
      (q) => document.querySelector(`tr[data-queue="${q}"] td:nth-child(3)`)?.textContent === "0",
      DLQ,
    );
    // The work queue's page names its DLQ and its depth; the DLQ's page names the work queue.
    await work.locator("a").click();
    await page.waitForFunction(() => document.getElementById("dlq-depth")?.textContent === "0");
    await page.click(`#queue-dlq a:text-is(${JSON.stringify(DLQ)})`);
    await page.locator(`#queue-dlq p.alert a:text-is(${JSON.stringify(WORK)})`).waitFor();
    assert.equal(await page.locator("#move").isVisible(), true, "a DLQ's page can move it back");
    assert.deepEqual(errors, [], "no script errors on the page");
  } finally {
    await ctx.close();
  }
});

test("a queue's page publishes, gets and purges; markup in names stays text", { timeout: 60_000 }, async () => {
  const ctx = await browser.newContext();
  try {
    const page = await newPage(ctx);
    await login(page);
    await page.locator("#nav").waitFor();
    // From the list to the queue's page by its link.
    await page.click('#nav a[href="#/queues"]');
    const row = page.locator(`tr[data-queue="${PAGE_Q.replace(/["\\]/g, "\\$&")}"]`);
    await row.waitFor();
    await row.locator("a").click();
    await page.waitForFunction(() => location.hash.startsWith("#/queues/%2F/"));
    await page.locator("#queue-stats [data-stat=Ready]").waitFor();
    assert.equal(await page.locator("#queue-charts svg").count(), 2, "the queue's own charts");
    assert.ok((await page.locator("main h2").first().textContent()).includes(PAGE_Q), "the name, as text");

    // Publish from the page.
    await page.fill("#publish-payload", "hello from the UI");
    await page.click("#publish button[type=submit]");
    await page.waitForFunction(() => document.getElementById("msg").textContent === "message published");
    await waitFor("the message in the queue", async () => (await depth(PAGE_Q)) === 1);

    // Get it (requeued: the default ack mode).
    await page.click("#get button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#got .payload")?.textContent === "hello from the UI");
    assert.equal(await depth(PAGE_Q), 1, "requeued after the get");
    await page.waitForFunction(() => document.querySelector("#queue-stats [data-stat=Ready]").textContent === "1");

    // Purge, confirmed; the API sees an empty queue and so does the page.
    await page.click("#purge");
    await page.waitForFunction(() => /purged/.test(document.getElementById("msg").textContent));
    assert.ok(page.dialogs.some((d) => d.startsWith("Purge all ready messages")), "a confirmation was asked for");
    const q = await api("GET", `/api/queues/%2F/${encodeURIComponent(PAGE_Q)}`);
    assert.equal(q.messages, 0);
    assert.equal(q.messages_ready, 0);
    await page.waitForFunction(() => document.querySelector("#queue-stats [data-stat=Ready]").textContent === "0");

    // The name never became markup anywhere.
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.locator("main img").count(), 0);

    // The other pages render (connections, channels, exchanges, users, policies, vhosts,
    // definitions) without script errors.
    for (const [view, sel] of [
      ["connections", "#conn-list table"],
      ["channels", "#chan-list table"],
      ["exchanges", '#x-list tr:has-text("amq.topic")'],
      ["users", "#perm-list table"],
      ["policies", "#policy-list table"],
      ["vhosts", "#vhost-list table"],
      ["definitions", "#export"],
    ]) {
      await page.click(`#nav a[href="#/${view}"]`);
      await page.locator(sel).first().waitFor();
    }

    // Log out: back to the form, credentials forgotten.
    await page.click("#logout");
    await page.locator("#login").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(page.errors, [], "no script errors on the page");
  } finally {
    await ctx.close();
  }
});

test("the connections and channels pages show the test's own connection and close it", { timeout: 45_000 }, async () => {
  const NAME = `dash.conn.${SUFFIX}`;
  const conn = await amqpConnect(NAME);
  const ctx = await browser.newContext();
  try {
    const page = await newPage(ctx);
    await login(page);
    await page.locator("#nav").waitFor();
    const mine = (await api("GET", "/api/connections")).find((c) => c.client_properties?.connection_name === NAME);
    assert.ok(mine, "the broker lists the connection");

    // Its channel, by the channel's name.
    const chans = (await api("GET", "/api/channels")).filter((c) => c.connection_details?.name === mine.name);
    assert.equal(chans.length, 1);
    await page.click('#nav a[href="#/channels"]');
    await page.locator(`#chan-list td:text-is(${JSON.stringify(chans[0].name)})`).waitFor();

    // The connection, by its client-given name; close it from the page.
    await page.click('#nav a[href="#/connections"]');
    const row = page.locator(`#conn-list tr:has-text(${JSON.stringify(NAME)})`);
    await row.waitFor();
    assert.equal(await row.getAttribute("data-connection"), mine.name);
    await row.locator("button.close").click();
    await page.waitForFunction(() => /: done$/.test(document.getElementById("msg").textContent));
    assert.ok(page.dialogs.some((d) => d.startsWith("Close the connection")), "a confirmation was asked for");

    // The client is told (Connection.Close; it answers Close-Ok) and the broker forgets it.
    await conn.next(10, 50);
    conn.sock.write(method(0, 10, 51, Buffer.alloc(0)));
    await waitFor("the connection gone", async () =>
      !(await api("GET", "/api/connections")).some((c) => c.name === mine.name),
    );
    await row.waitFor({ state: "detached" });
    assert.deepEqual(page.errors, [], "no script errors on the page");
  } finally {
    conn.sock.destroy();
    await ctx.close();
  }
});

test("vhosts, policies and definitions: add through the forms, export, import", { timeout: 45_000 }, async () => {
  const VH = `dash.vh.${SUFFIX}`;
  const ctx = await browser.newContext({ acceptDownloads: true });
  try {
    const page = await newPage(ctx);
    await login(page);
    await page.locator("#nav").waitFor();

    await page.click('#nav a[href="#/vhosts"]');
    await page.fill('#add-vhost input[name="name"]', VH);
    await page.click("#add-vhost button[type=submit]");
    await page.locator(`#vhost-list td:text-is(${JSON.stringify(VH)})`).waitFor();

    await page.click('#nav a[href="#/policies"]');
    await page.selectOption('#add-policy select[name="vhost"]', VH);
    await page.fill('#add-policy input[name="name"]', "dash-pol");
    await page.fill('#add-policy input[name="pattern"]', "^dash\\.");
    await page.fill('#add-policy textarea[name="definition"]', '{"max-length": 5}');
    await page.click("#add-policy button[type=submit]");
    await page.locator('#policy-list td:text-is("dash-pol")').waitFor();
    const pol = await api("GET", `/api/policies/${encodeURIComponent(VH)}/dash-pol`);
    assert.deepEqual(pol.definition, { "max-length": 5 });

    // Export: a download holding the new vhost and policy.
    await page.click('#nav a[href="#/definitions"]');
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
    const exported = JSON.parse(await readFile(await download.path(), "utf8"));
    assert.ok(exported.vhosts.some((v) => v.name === VH));
    assert.ok(exported.policies.some((p) => p.vhost === VH && p.name === "dash-pol"));

    // Import a queue into the vhost: it exists afterwards, under the policy.
    const doc = { queues: [{ name: "dash.imported", vhost: VH, durable: true, auto_delete: false, arguments: {} }] };
    await page.fill("#import-doc", JSON.stringify(doc));
    await page.click("#import button[type=submit]");
    await page.waitForFunction(() => document.getElementById("msg").textContent === "definitions imported");
    const q = await api("GET", `/api/queues/${encodeURIComponent(VH)}/dash.imported`);
    assert.equal(q.policy, "dash-pol");
    assert.deepEqual(page.errors, [], "no script errors on the page");
  } finally {
    await ctx.close();
    await api("DELETE", `/api/vhosts/${encodeURIComponent(VH)}`).catch(() => {});
  }
});
