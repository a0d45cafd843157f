// Warren's dashboard (GET /) in headless Chromium — Debian's `chromium` package, driven by
// playwright-core over the DevTools protocol (no browser download). Loads the page with HTTP
// basic auth, sees queues created by the test, clicks "move back" on a dead-letter queue and
// checks through the API that the messages went back. Needs WARREN_HTTP_PORT; CHROMIUM may
// name the browser (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const PORT = process.env.WARREN_HTTP_PORT;
if (!PORT) throw new Error("WARREN_HTTP_PORT must be set");
const BASE = `http://127.0.0.1:${PORT}`;
const AUTH = "Basic " + Buffer.from("guest:guest").toString("base64");
const SUFFIX = `${process.pid}-${Date.now()}`;
const WORK = `dash.work.${SUFFIX}`;
const DLQ = `dash.dlq.${SUFFIX}`;
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

let browser;

before(async () => {
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
  for (const q of [WORK, DLQ]) {
    await api("DELETE", `/api/queues/%2F/${encodeURIComponent(q)}`).catch(() => {});
  }
});

test("without credentials the dashboard is refused", async () => {
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    // Chromium either shows the 401 or, with no credentials to offer to the challenge,
    // aborts the navigation with ERR_INVALID_AUTH_CREDENTIALS.
    try {
      const r = await page.goto(BASE + "/", { timeout: 15_000 });
      assert.equal(r.status(), 401);
    } catch (e) {
      assert.match(String(e), /ERR_INVALID_AUTH_CREDENTIALS/);
    }
    assert.equal(await page.locator("#rows").count(), 0, "the dashboard did not render");
  } finally {
    await ctx.close();
  }
});

test("dashboard shows the queues and moves a DLQ back", { timeout: 45_000 }, async () => {
  const ctx = await browser.newContext({
    httpCredentials: { username: "guest", password: "guest" },
  });
  try {
    const page = await ctx.newPage();
    page.setDefaultTimeout(15_000);
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const dialogs = [];
    page.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.accept();
    });

    const r = await page.goto(BASE + "/");
    assert.equal(r.status(), 200);
    assert.equal(await page.title(), "Warren");

    // Both queues are listed; the DLQ is marked and carries the button, the work queue not.
    const work = page.locator(`tr[data-queue="${WORK}"]`);
    const dlq = page.locator(`tr[data-queue="${DLQ}"]`);
    await work.waitFor();
    await dlq.waitFor();
    assert.match((await dlq.getAttribute("class")) ?? "", /\bdlq\b/);
    assert.doesNotMatch((await work.getAttribute("class")) ?? "", /\bdlq\b/);
    assert.equal(await work.locator("button.move").count(), 0);
    assert.equal((await dlq.locator("td").nth(2).textContent()).trim(), String(N), "DLQ depth shown");
    // Overview tiles are filled from /api/overview (the fetches reuse the credentials).
    await page.waitForFunction(() => /\d/.test(document.getElementById("queues").textContent));

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
    assert.deepEqual(errors, [], "no script errors on the page");
  } finally {
    await ctx.close();
  }
});
