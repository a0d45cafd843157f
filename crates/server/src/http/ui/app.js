// Warren's management UI: a login form and hash-routed views over the HTTP API (/api).
// Plain JavaScript, no library; embedded in the broker binary and served at /ui/app.js.
//
// - Credentials: the login form checks them with GET /api/whoami and keeps them in
//   sessionStorage (this tab only); every fetch sends `Authorization: Basic …` and
//   `X-Requested-With`, so a 401 never opens the browser's own prompt. Log out forgets them.
// - Charts: the page samples /api/overview every 5 s and keeps the last 5 minutes in memory
//   (lost on reload); a queue's page samples that queue on each refresh (every 5 s while it
//   is open). The rates themselves are the broker's (`*_details.rate`).
// - Every value put into the page goes through `html` (escaped): names are user input.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const REFRESH_MS = 5000;
const SAMPLE_MS = 5000;
const HISTORY_MS = 5 * 60 * 1000;

// ---- escaping -------------------------------------------------------------------------

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
/** Already-safe markup, passed through `html` unescaped. */
class Raw {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}
const raw = (s) => new Raw(s);
/** Tagged template: every interpolation is escaped unless it is `Raw` (or an array of them). */
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    if (Array.isArray(v)) out += v.map((x) => (x instanceof Raw ? x.s : esc(x))).join("");
    else out += v instanceof Raw ? v.s : esc(v);
    out += strings[i + 1];
  });
  return raw(out);
}

// ---- session and API ------------------------------------------------------------------

const session = {
  get token() { return sessionStorage.getItem("warren.auth"); },
  get user() { return sessionStorage.getItem("warren.user"); },
  set(user, token) {
    sessionStorage.setItem("warren.auth", token);
    sessionStorage.setItem("warren.user", user);
  },
  clear() {
    sessionStorage.removeItem("warren.auth");
    sessionStorage.removeItem("warren.user");
  },
};

function basic(user, pass) {
  // btoa needs Latin-1: encode UTF-8 first.
  return "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${pass}`)));
}

class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

async function api(method, path, body, token = session.token) {
  const headers = { "X-Requested-With": "XMLHttpRequest", accept: "application/json" };
  if (token) headers.authorization = token;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await r.text();
  let j = null;
  try {
    j = text ? JSON.parse(text) : null;
  } catch {
    j = null;
  }
  if (!r.ok) {
    const reason = (j && (j.reason || j.error)) || text || r.statusText;
    // Credentials that stopped working (password changed, user deleted): back to the form.
    if (r.status === 401 && token === session.token && j?.error === "not_authorized") {
      logout("Your session ended: " + reason);
    }
    throw new ApiError(r.status, `${r.status} ${reason}`);
  }
  return j;
}

/** Thrown by `load` when the view changed while it waited: the old view writes nothing. */
class Stale extends Error {}

/** GET for a view's refresh: throws `Stale` if the user went to another view meanwhile. */
async function load(p) {
  const g = generation;
  const j = await api("GET", p);
  if (g !== generation) throw new Stale("stale");
  return j;
}

const path = (...segs) => segs.map(enc).join("/");
const qpath = (vhost, name) => `/api/queues/${path(vhost, name)}`;

// ---- flash messages -------------------------------------------------------------------

function say(text, error = false) {
  const m = $("msg");
  m.textContent = text;
  m.className = error ? "error" : "";
}
/** Runs an action, reporting its error in #msg; returns its result (undefined on error). */
async function attempt(what, fn) {
  try {
    return await fn();
  } catch (e) {
    say(`${what} failed: ${e.message}`, true);
    return undefined;
  }
}

// ---- formatting -----------------------------------------------------------------------

function num(v) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? v.toLocaleString("en") : v.toLocaleString("en", { maximumFractionDigits: 1 });
}
function bytes(n) {
  if (typeof n !== "number") return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
const rate = (d) => d?.rate ?? 0;
const tags = (t) => (Array.isArray(t) ? t.join(", ") : t ?? "");
const yes = (b) => (b ? "yes" : "");
const json = (v) => (v && typeof v === "object" && Object.keys(v).length ? JSON.stringify(v) : "");
/** The columns of an alert (`/api/alerts`, a queue's `alerts`). */
const ALERT_COLS = [
  { label: "kind", key: (a) => a.kind, cell: (a) => html`<span class="alert">${a.kind}</span>` },
  { label: "value", key: (a) => a.value, num: true },
  { label: "threshold", key: (a) => a.threshold, num: true },
  { label: "since", key: (a) => a.since, cell: (a) => new Date(a.since).toLocaleTimeString() },
];
/** Rows of a key/value table ([key, value]); a value mentioning an ALARM is marked. */
const kv = (rows) =>
  html`${rows.map(([k, v]) => html`<tr><th>${k}</th><td data-stat="${k}" class="${/ALARM/.test(v) ? "alert" : ""}">${v}</td></tr>`)}`;
const queueLink = (vhost, name) => html`<a href="#/queues/${enc(vhost)}/${enc(name)}">${name}</a>`;

// ---- tables: sorting and filtering ---------------------------------------------------

// Sort state per table id, kept across refreshes: {key, dir}.
const sorts = {};

/**
 * Renders `rows` into the element `id` as a table. `cols`: {label, key (sort value), cell
 * (markup, default the escaped key value), num}. `opts.filter`: text or /regex/ matched
 * against `opts.text(row)`; `opts.rowAttrs(row)` → markup of the <tr>'s attributes.
 */
function table(id, cols, rows, opts = {}) {
  const el = $(id);
  if (!el) return;
  const st = sorts[id] || (sorts[id] = { key: opts.sort ?? null, dir: "asc" });
  let shown = rows;
  const f = (opts.filter ?? "").trim();
  if (f) {
    let test;
    const m = f.match(/^\/(.*)\/$/);
    try {
      const re = m ? new RegExp(m[1], "i") : null;
      test = re ? (s) => re.test(s) : (s) => s.toLowerCase().includes(f.toLowerCase());
    } catch {
      test = () => false;
    }
    shown = rows.filter((r) => test(opts.text ? opts.text(r) : JSON.stringify(r)));
  }
  const col = cols.find((c) => c.label === st.key);
  if (col?.key) {
    const k = col.key;
    shown = [...shown].sort((a, b) => {
      const x = k(a), y = k(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
      return st.dir === "asc" ? c : -c;
    });
  }
  const head = cols.map((c) =>
    c.key
      ? html`<th class="sortable${c.num ? " num" : ""}" data-col="${c.label}" data-dir="${st.key === c.label ? st.dir : ""}">${c.label}</th>`
      : html`<th>${c.label}</th>`,
  );
  const body = shown.map((r, i) => {
    const cells = cols.map((c) => {
      const v = c.cell ? c.cell(r, i) : c.key ? c.key(r) : "";
      return html`<td class="${c.num ? "num" : ""}">${v instanceof Raw ? v : c.num ? num(v) : v}</td>`;
    });
    return html`<tr ${opts.rowAttrs ? opts.rowAttrs(r) : ""}>${cells}</tr>`;
  });
  const count = rows.length === shown.length ? `${rows.length}` : `${shown.length} of ${rows.length}`;
  el.innerHTML = html`<table id="${id}-table"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>
    <div class="muted">${count} item(s)</div>`;
  for (const th of el.querySelectorAll("th.sortable")) {
    th.onclick = () => {
      const key = th.dataset.col;
      st.dir = st.key === key && st.dir === "asc" ? "desc" : "asc";
      st.key = key;
      refreshView();
    };
  }
  // Action buttons: data-act names a handler in opts.actions, data-i the row.
  for (const b of el.querySelectorAll("button[data-act]")) {
    b.onclick = () => opts.actions[b.dataset.act](shown[Number(b.dataset.i)]);
  }
  return shown;
}
/** An action column: one button per row calling `opts.actions[act]` (if `when(row)`). */
function button(label, act, cls = "", when = () => true) {
  return { label: "", cell: (r, i) => (when(r) ? html`<button class="${cls}" data-act="${act}" data-i="${i}">${label}</button>` : "") };
}

// ---- forms ----------------------------------------------------------------------------

/** Reads a form's named fields into an object (checkboxes as booleans). */
function fields(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  return out;
}
/**
 * Wires the form `id` to `fn(fields)`, which returns the message to show when it worked;
 * then the form is cleared if `reset` and the view refreshes.
 */
function onSubmit(id, what, fn, reset = false) {
  const form = $(id);
  if (!form) return;
  form.onsubmit = async (e) => {
    e.preventDefault();
    const done = await attempt(what, () => fn(fields(form)));
    if (done === undefined) return;
    say(done);
    if (reset) form.reset();
    refreshView();
  };
}
function parseJson(text, what) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not JSON: ${e.message}`);
  }
}
async function vhostOptions(selected) {
  const vs = (await api("GET", "/api/vhosts")) ?? [];
  return vs.map((v) => html`<option ${v.name === selected ? "selected" : ""}>${v.name}</option>`);
}

// ---- rate history (sampled by the page) ----------------------------------------------

const samples = [];
// Per queue ("vhost\0name"): the samples taken while its page was open.
const queueSamples = new Map();
let sampler = null;

/** Appends a sample of `ms` (message_stats) and `counts` to `list`, dropping the old ones. */
function remember(list, ms, counts) {
  list.push({
    t: Date.now(),
    publish: rate(ms.publish_details),
    deliver: rate(ms.deliver_get_details),
    ack: rate(ms.ack_details),
    ready: counts.messages_ready ?? 0,
    unacked: counts.messages_unacknowledged ?? 0,
  });
  while (list.length && list[0].t < Date.now() - HISTORY_MS) list.shift();
}

async function sample() {
  try {
    const o = await api("GET", "/api/overview");
    const ms = o.message_stats || {};
    remember(samples, ms, o.queue_totals ?? {});
    $("version").textContent = `${o.product_version} · ${o.cluster_name}`;
    return o;
  } catch {
    return null;
  }
}

const COLORS = ["#2a5db0", "#e07b00", "#2e9e44"];

/** An SVG line chart of `series` ({label, key}) over sampled history `data`. */
function chart(title, series, data = samples) {
  const W = 600, H = 150, P = 30;
  const now = Date.now();
  const max = Math.max(1, ...data.flatMap((s) => series.map((x) => s[x.key])));
  const xy = (s, k) => {
    const x = P + ((s.t - (now - HISTORY_MS)) / HISTORY_MS) * (W - P - 5);
    const y = H - 18 - (s[k] / max) * (H - 28);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  };
  // A line per series, and a dot on its latest sample (visible from the first one on).
  const lines = series.map((x, i) => {
    const last = data.length ? xy(data[data.length - 1], x.key).split(",") : null;
    return html`<polyline fill="none" stroke="${COLORS[i]}" stroke-width="2" points="${data.map((s) => xy(s, x.key)).join(" ")}"/>${
      last ? html`<circle cx="${last[0]}" cy="${last[1]}" r="3" fill="${COLORS[i]}"/>` : ""
    }`;
  });
  const legend = series.map((x, i) => {
    const last = data.length ? data[data.length - 1][x.key] : 0;
    return html`<span><i style="background:${COLORS[i]}"></i>${x.label}: <b>${num(last)}</b></span>`;
  });
  return html`<div class="chart"><b>${title}</b>
    <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${title}">
      <line x1="${P}" y1="${H - 18}" x2="${W}" y2="${H - 18}" stroke="#ccc"/>
      <line x1="${P}" y1="10" x2="${W}" y2="10" stroke="#eee"/>
      <text x="2" y="14" font-size="10" fill="#777">${num(max)}</text>
      <text x="2" y="${H - 18}" font-size="10" fill="#777">0</text>
      <text x="${P}" y="${H - 4}" font-size="10" fill="#777">−5 min</text>
      <text x="${W - 30}" y="${H - 4}" font-size="10" fill="#777">now</text>
      ${lines}
    </svg>
    <div class="legend">${legend}</div></div>`;
}

/** The two charts of a history: message rates and queued messages. */
function charts(data) {
  return html`${chart("Message rates (/s)", [
    { label: "publish", key: "publish" },
    { label: "deliver/get", key: "deliver" },
    { label: "ack", key: "ack" },
  ], data)}${chart("Queued messages", [
    { label: "ready", key: "ready" },
    { label: "unacked", key: "unacked" },
  ], data)}`;
}

// ---- views ----------------------------------------------------------------------------
// Each view: {title, mount(params) → markup of its skeleton (forms stay across refreshes),
// wire(params) (event handlers after mounting), refresh(params) (data, every REFRESH_MS)}.

const views = {};

views.overview = {
  mount: () => html`
    <div class="tiles">
      <div class="tile">publish/s<b id="publish">–</b></div>
      <div class="tile">deliver/s<b id="deliver">–</b></div>
      <div class="tile">ack/s<b id="ack">–</b></div>
      <div class="tile">messages<b id="messages">–</b></div>
      <div class="tile">connections<b id="connections">–</b></div>
      <div class="tile">channels<b id="channels">–</b></div>
      <div class="tile">queues<b id="queues">–</b></div>
      <div class="tile">consumers<b id="consumers">–</b></div>
      <div class="tile">alerts<b id="alerts">–</b></div>
    </div>
    <div class="cols" id="charts"></div>
    <p class="muted">Charts: sampled by this page every ${SAMPLE_MS / 1000} s while it is open, last 5 minutes.</p>
    <h2>Alerts</h2><div id="alert-list"></div>
    <h2>Node</h2><table class="kv" id="node"></table>
    <h2>Listeners</h2><div id="listeners"></div>`,
  async refresh() {
    const ov = await load("/api/overview");
    const ms = ov.message_stats || {};
    $("publish").textContent = num(rate(ms.publish_details));
    $("deliver").textContent = num(rate(ms.deliver_get_details));
    $("ack").textContent = num(rate(ms.ack_details));
    $("messages").textContent = num(ov.queue_totals.messages);
    for (const k of ["connections", "channels", "queues", "consumers"]) $(k).textContent = num(ov.object_totals[k]);
    $("charts").innerHTML = charts(samples);
    const alerts = (await load("/api/alerts")) ?? [];
    $("alerts").textContent = alerts.length;
    table("alert-list", [
      { label: "vhost", key: (a) => a.vhost },
      { label: "queue", key: (a) => a.queue, cell: (a) => queueLink(a.vhost, a.queue) },
      ...ALERT_COLS,
    ], alerts);
    // Node details need the monitoring (or administrator) tag.
    const nodes = await load("/api/nodes").catch((e) => (e instanceof Stale ? Promise.reject(e) : null));
    const n = nodes?.[0];
    $("node").innerHTML = n
      ? kv([
          ["Name", n.name],
          ["Uptime", `${Math.round(n.uptime / 1000).toLocaleString("en")} s`],
          ["Memory", `${bytes(n.mem_used)} of ${bytes(n.mem_limit)}`],
          ["Memory alarm", n.mem_alarm ? "ALARM: publishers blocked" : "no"],
          ["Disk alarm", n.disk_free_alarm ? "ALARM: publishers blocked" : "no"],
          ["Disk free limit", bytes(n.disk_free_limit)],
        ])
      : html`<tr><td class="muted">Node details need the monitoring tag.</td></tr>`;
    table("listeners", [
      { label: "protocol", key: (l) => l.protocol },
      { label: "address", key: (l) => l.ip_address },
      { label: "port", key: (l) => l.port },
    ], ov.listeners ?? []);
  },
};

async function moveBack(vhost, name) {
  if (!confirm(`Move all messages in ${name} back to the queues they died in?`)) return;
  const j = await attempt("move", () => api("POST", `${qpath(vhost, name)}/move`, { dry_run: false }));
  if (j) {
    say(`moved ${j.moved} message(s) from ${name}` + (j.failed?.length ? `, ${j.failed.length} not moved: ${j.failed[0].reason}` : ""));
  }
  refreshView();
}

views.queues = {
  mount: async () => html`
    <h2>Queues</h2>
    <div class="inline"><label>Filter (text or /regex/)
      <input id="queue-filter" placeholder="name or vhost"></label></div>
    <div id="queue-list"></div>
    <h2>Add a queue</h2>
    <form class="inline" id="add-queue">
      <label>Virtual host <select name="vhost">${await vhostOptions("/")}</select></label>
      <label>Name <input name="name" required></label>
      <label>Type <select name="type"><option>classic</option><option>quorum</option></select></label>
      <label><span>Durable</span><input type="checkbox" name="durable" checked></label>
      <label>Arguments (JSON) <input name="arguments" placeholder='{"x-max-length": 1000}'></label>
      <button type="submit">Add queue</button>
    </form>`,
  wire() {
    $("queue-filter").oninput = () => refreshView();
    onSubmit("add-queue", "add queue", async (f) => {
      const args = parseJson(f.arguments, "arguments");
      if (f.type === "quorum") args["x-queue-type"] = "quorum";
      await api("PUT", qpath(f.vhost, f.name), { durable: f.durable, auto_delete: false, arguments: args });
      return `queue ${f.name} declared`;
    }, true);
  },
  async refresh() {
    const qs = (await load("/api/queues")) ?? [];
    table("queue-list", [
      { label: "vhost", key: (q) => q.vhost },
      { label: "name", key: (q) => q.name, cell: (q) => queueLink(q.vhost, q.name) },
      { label: "ready", key: (q) => q.messages_ready, num: true },
      { label: "unacked", key: (q) => q.messages_unacknowledged, num: true },
      { label: "total", key: (q) => q.messages, num: true },
      { label: "consumers", key: (q) => q.consumers, num: true },
      { label: "publish/s", key: (q) => rate(q.message_stats?.publish_details), num: true },
      { label: "deliver/s", key: (q) => rate(q.message_stats?.deliver_get_details), num: true },
      { label: "ack/s", key: (q) => rate(q.message_stats?.ack_details), num: true },
      { label: "growth/min", key: (q) => q.growth_per_minute, num: true },
      { label: "type", key: (q) => q.type },
      { label: "alerts", key: (q) => (q.alerts || []).map((a) => a.kind).join(", "), cell: (q) => html`<span class="alert">${(q.alerts || []).map((a) => a.kind).join(", ")}</span>` },
      button("move back", "move", "move", (q) => q.dead_letter_queue),
    ], qs, {
      filter: $("queue-filter")?.value,
      text: (q) => `${q.vhost} ${q.name}`,
      rowAttrs: (q) => html`data-queue="${q.name}" data-vhost="${q.vhost}" class="${q.dead_letter_queue ? "dlq" : ""}"`,
      actions: { move: (q) => moveBack(q.vhost, q.name) },
      sort: "name",
    });
  },
};


/** Where a queue dead-letters to: from its arguments, else its policy. */
function deadLetterTarget(q) {
  const a = q.arguments || {};
  const p = q.effective_policy_definition || {};
  const dlx = a["x-dead-letter-exchange"] ?? p["dead-letter-exchange"];
  if (dlx === undefined) return null;
  return { exchange: dlx, routingKey: a["x-dead-letter-routing-key"] ?? p["dead-letter-routing-key"] };
}

views.queue = {
  mount: ([vhost, name]) => html`
    <h2>Queue ${name} <span class="muted">in ${vhost}</span></h2>
    <p><a href="#/queues">← all queues</a></p>
    <div class="cols">
      <div><table class="kv" id="queue-stats"></table></div>
      <div><h3>Dead-lettering</h3><div id="queue-dlq"></div><h3>Alerts</h3><div id="queue-alerts"></div></div>
    </div>
    <div class="cols" id="queue-charts"></div>
    <p class="muted">Charts: sampled by this page every ${REFRESH_MS / 1000} s while it is open, last 5 minutes.</p>
    <h2>Consumers</h2><div id="queue-consumers"></div>
    <h2>Bindings</h2><div id="queue-bindings"></div>
    <form class="inline" id="add-binding">
      <label>From exchange <input name="source" required></label>
      <label>Routing key <input name="routing_key"></label>
      <label>Arguments (JSON) <input name="arguments"></label>
      <button type="submit">Bind</button>
    </form>
    <div class="cols">
      <div>
        <h2>Publish a message</h2>
        <form class="stack" id="publish">
          <label>Routing key (default exchange) <input name="routing_key" value="${name}"></label>
          <label>Headers (JSON) <input name="headers" placeholder='{"k": "v"}'></label>
          <label><span><input type="checkbox" name="persistent"> persistent (delivery mode 2)</span></label>
          <label>Payload <textarea name="payload" id="publish-payload"></textarea></label>
          <button type="submit">Publish message</button>
        </form>
      </div>
      <div>
        <h2>Get messages</h2>
        <form class="inline" id="get">
          <label>Ack mode <select name="ackmode">
            <option value="ack_requeue_true">Nack, requeue</option>
            <option value="ack_requeue_false">Ack, remove</option>
            <option value="reject_requeue_true">Reject, requeue</option>
            <option value="reject_requeue_false">Reject, no requeue (dead-letters)</option>
          </select></label>
          <label>Encoding <select name="encoding"><option value="auto">auto</option><option value="base64">base64</option></select></label>
          <label>Count <input name="count" type="number" min="1" value="1" style="width:5em"></label>
          <button type="submit">Get messages</button>
        </form>
        <div id="got"></div>
      </div>
    </div>
    <h2>Danger zone</h2>
    <p><button id="purge" class="danger" type="button">Purge messages</button>
    <button id="move" class="move hidden" type="button">Move messages back (DLQ)</button>
    <button id="delete-queue" class="danger" type="button">Delete queue</button></p>`,
  wire([vhost, name]) {
    onSubmit("publish", "publish", async (f) => {
      const properties = {};
      const headers = parseJson(f.headers, "headers");
      if (Object.keys(headers).length) properties.headers = headers;
      if (f.persistent) properties.delivery_mode = 2;
      const r = await api("POST", `/api/exchanges/${path(vhost, "amq.default")}/publish`, {
        properties, routing_key: f.routing_key, payload: f.payload, payload_encoding: "string",
      });
      if (!r.routed) throw new Error("not routed: no queue matched the routing key");
      return "message published";
    });
    onSubmit("get", "get messages", async (f) => {
      const ms = await api("POST", `${qpath(vhost, name)}/get`, {
        count: Number(f.count) || 1, ackmode: f.ackmode, encoding: f.encoding, truncate: 50000,
      });
      $("got").innerHTML = ms.length
        ? html`${ms.map((m, i) => html`<table class="kv message">
            <tr><th>Message ${i + 1}</th><td>${m.message_count} left in the queue</td></tr>
            <tr><th>Exchange</th><td>${m.exchange || "(default)"}</td></tr>
            <tr><th>Routing key</th><td>${m.routing_key}</td></tr>
            <tr><th>Redelivered</th><td>${m.redelivered ? "yes" : "no"}</td></tr>
            <tr><th>Properties</th><td><pre>${JSON.stringify(m.properties, null, 1)}</pre></td></tr>
            <tr><th>Payload <span class="muted">${m.payload_bytes} bytes, ${m.payload_encoding}</span></th><td><pre class="payload">${m.payload}</pre></td></tr>
          </table>`)}`
        : html`<p class="muted" id="got-empty">Queue is empty.</p>`;
      return `got ${ms.length} message(s)`;
    });
    onSubmit("add-binding", "bind", async (f) => {
      await api("POST", `/api/bindings/${path(vhost, f.source)}/q/${enc(name)}`, {
        routing_key: f.routing_key, arguments: parseJson(f.arguments, "arguments"),
      });
      return `bound ${name} to ${f.source}`;
    }, true);
    $("purge").onclick = async () => {
      if (!confirm(`Purge all ready messages of ${name}?`)) return;
      if ((await attempt("purge", () => api("DELETE", `${qpath(vhost, name)}/contents`))) !== undefined) say(`queue ${name} purged`);
      refreshView();
    };
    $("move").onclick = () => moveBack(vhost, name);
    $("delete-queue").onclick = async () => {
      if (!confirm(`Delete the queue ${name} and its messages?`)) return;
      if ((await attempt("delete", () => api("DELETE", qpath(vhost, name)))) !== undefined) {
        say(`queue ${name} deleted`);
        location.hash = "#/queues";
      }
    };
  },
  async refresh([vhost, name]) {
    const q = await load(qpath(vhost, name));
    const ms = q.message_stats || {};
    const key = `${vhost}\0${name}`;
    if (!queueSamples.has(key)) queueSamples.set(key, []);
    remember(queueSamples.get(key), ms, q);
    $("queue-charts").innerHTML = charts(queueSamples.get(key));
    const rows = [
      ["Type", q.type], ["State", q.state], ["Durable", yes(q.durable)], ["Auto-delete", yes(q.auto_delete)],
      ["Exclusive", yes(q.exclusive)], ["Policy", q.policy ?? ""], ["Arguments", json(q.arguments)],
      ["Ready", num(q.messages_ready)], ["Unacked", num(q.messages_unacknowledged)], ["Total", num(q.messages)],
      ["Ready bytes", bytes(q.message_bytes_ready)], ["Paged out", num(q.messages_paged_out)],
      ["Consumers", num(q.consumers)],
      ["Publish", `${num(ms.publish)} (${num(rate(ms.publish_details))}/s)`],
      ["Deliver/get", `${num(ms.deliver_get)} (${num(rate(ms.deliver_get_details))}/s)`],
      ["Ack", `${num(ms.ack)} (${num(rate(ms.ack_details))}/s)`],
      ["Growth", `${num(q.growth_per_minute)} msg/min`],
    ];
    $("queue-stats").innerHTML = kv(rows);
    // Where it dead-letters to, and (for a DLQ) which queues of the vhost feed it.
    const t = deadLetterTarget(q);
    const siblings = t || q.dead_letter_queue ? (await load(`/api/queues/${enc(vhost)}`)) ?? [] : [];
    let dl;
    if (!t) dl = html`<p class="muted">No dead-letter exchange.</p>`;
    else {
      let target = "";
      if (t.exchange === "" && t.routingKey) {
        const dlq = siblings.find((x) => x.name === t.routingKey);
        target = dlq
          ? html` — the queue ${queueLink(vhost, dlq.name)}: <b id="dlq-depth">${num(dlq.messages)}</b> message(s)${(dlq.alerts || []).length ? html`, <span class="alert">${dlq.alerts.map((a) => a.kind).join(", ")}</span>` : ""}`
          : html` — <span class="alert">no queue ${t.routingKey} in this vhost: dead letters are dropped</span>`;
      }
      dl = html`<p>Dead-letters to exchange <b>${t.exchange || "(default)"}</b>${t.routingKey !== undefined ? html` with routing key <b>${t.routingKey}</b>` : ""}${target}.</p>`;
    }
    if (q.dead_letter_queue) {
      const feeders = siblings.filter((x) => {
        const xt = deadLetterTarget(x);
        return xt && xt.exchange === "" && xt.routingKey === name;
      });
      const list = feeders.length ? html`: ${feeders.map((x, i) => html`${i ? ", " : ""}${queueLink(vhost, x.name)}`)}` : " (through an exchange)";
      dl = html`${dl}<p class="alert">This queue is a dead-letter queue of other queues${list}.</p>`;
    }
    $("queue-dlq").innerHTML = dl;
    $("move").classList.toggle("hidden", !q.dead_letter_queue);
    table("queue-alerts", [
      ...ALERT_COLS,
    ], q.alerts || []);
    const consumers = ((await load(`/api/consumers/${enc(vhost)}`)) ?? []).filter((c) => c.queue?.name === name);
    table("queue-consumers", [
      { label: "tag", key: (c) => c.consumer_tag },
      { label: "channel", key: (c) => c.channel_details?.name },
      { label: "ack required", key: (c) => yes(c.ack_required) },
      { label: "exclusive", key: (c) => yes(c.exclusive) },
      { label: "prefetch", key: (c) => c.prefetch_count, num: true },
    ], consumers);
    const bs = (await load(`${qpath(vhost, name)}/bindings`)) ?? [];
    table("queue-bindings", [
      { label: "from", key: (b) => b.source || "(default exchange)" },
      { label: "routing key", key: (b) => b.routing_key },
      { label: "arguments", key: (b) => json(b.arguments) },
      button("unbind", "unbind", "", (b) => b.source),
    ], bs, {
      actions: {
        unbind: async (b) => {
          await attempt("unbind", () => api("DELETE", `/api/bindings/${path(vhost, b.source)}/q/${path(name, b.properties_key)}`));
          refreshView();
        },
      },
    });
  },
};

/** A row action: asks `question(row)`, then DELETEs `url(row)` and says it was done. */
function confirmDelete(question, url, what = "delete") {
  return async (r) => {
    if (!confirm(question(r))) return;
    if ((await attempt(what, () => api("DELETE", url(r)))) !== undefined) say(`${question(r).replace(/\?$/, "")}: done`);
    refreshView();
  };
}

/** Closes a connection (for channels: the connection they are on). */
const closeConnection = confirmDelete(
  (name) => `Close the connection ${name}?`,
  (name) => `/api/connections/${enc(name)}`,
  "close",
);

views.connections = {
  mount: () => html`<h2>Connections</h2>
    <div class="inline"><label>Filter (text or /regex/) <input id="conn-filter"></label></div>
    <div id="conn-list"></div>`,
  wire() {
    $("conn-filter").oninput = () => refreshView();
  },
  async refresh() {
    const cs = (await load("/api/connections")) ?? [];
    table("conn-list", [
      { label: "name", key: (c) => c.name },
      { label: "user", key: (c) => c.user },
      { label: "vhost", key: (c) => c.vhost },
      { label: "client", key: (c) => [c.client_properties?.product, c.client_properties?.connection_name].filter(Boolean).join(" · ") },
      { label: "state", key: (c) => c.state },
      { label: "channels", key: (c) => c.channels, num: true },
      { label: "received", key: (c) => c.recv_oct, cell: (c) => bytes(c.recv_oct), num: true },
      { label: "sent", key: (c) => c.send_oct, cell: (c) => bytes(c.send_oct), num: true },
      button("close", "close", "danger close"),
    ], cs, {
      filter: $("conn-filter")?.value,
      text: (c) => `${c.name} ${c.user} ${c.vhost} ${JSON.stringify(c.client_properties ?? {})}`,
      rowAttrs: (c) => html`data-connection="${c.name}"`,
      actions: { close: (c) => closeConnection(c.name) },
      sort: "name",
    });
  },
};

views.channels = {
  mount: () => html`<h2>Channels</h2><div id="chan-list"></div>
    <p class="muted">AMQP has no way to close one channel from outside: "close" closes its connection.</p>`,
  async refresh() {
    const cs = (await load("/api/channels")) ?? [];
    table("chan-list", [
      { label: "name", key: (c) => c.name },
      { label: "user", key: (c) => c.user },
      { label: "vhost", key: (c) => c.vhost },
      { label: "consumers", key: (c) => c.consumer_count, num: true },
      { label: "prefetch", key: (c) => c.prefetch_count, num: true },
      { label: "unacked", key: (c) => c.messages_unacknowledged, num: true },
      { label: "confirm", key: (c) => yes(c.confirm) },
      { label: "tx", key: (c) => yes(c.transactional) },
      button("close", "close", "danger close"),
    ], cs, { actions: { close: (c) => closeConnection(c.connection_details?.name) }, sort: "name" });
  },
};

views.exchanges = {
  mount: async () => html`<h2>Exchanges</h2>
    <div class="inline"><label>Filter (text or /regex/) <input id="x-filter"></label></div>
    <div id="x-list"></div>
    <h2>Add an exchange</h2>
    <form class="inline" id="add-exchange">
      <label>Virtual host <select name="vhost">${await vhostOptions("/")}</select></label>
      <label>Name <input name="name" required></label>
      <label>Type <select name="type"><option>direct</option><option>fanout</option><option>topic</option><option>headers</option><option>x-consistent-hash</option></select></label>
      <label><span>Durable</span><input type="checkbox" name="durable" checked></label>
      <label><span>Internal</span><input type="checkbox" name="internal"></label>
      <button type="submit">Add exchange</button>
    </form>`,
  wire() {
    $("x-filter").oninput = () => refreshView();
    onSubmit("add-exchange", "add exchange", async (f) => {
      await api("PUT", `/api/exchanges/${path(f.vhost, f.name)}`, { type: f.type, durable: f.durable, internal: f.internal, auto_delete: false });
      return `exchange ${f.name} declared`;
    }, true);
  },
  async refresh() {
    const xs = (await load("/api/exchanges")) ?? [];
    table("x-list", [
      { label: "vhost", key: (x) => x.vhost },
      { label: "name", key: (x) => x.name || "(AMQP default)" },
      { label: "type", key: (x) => x.type },
      { label: "durable", key: (x) => yes(x.durable) },
      { label: "auto-delete", key: (x) => yes(x.auto_delete) },
      { label: "internal", key: (x) => yes(x.internal) },
      { label: "arguments", key: (x) => json(x.arguments) },
      button("delete", "del", "danger", (x) => x.name && !x.name.startsWith("amq.")),
    ], xs, {
      filter: $("x-filter")?.value,
      text: (x) => `${x.vhost} ${x.name} ${x.type}`,
      actions: {
        del: confirmDelete((x) => `Delete the exchange ${x.name}?`, (x) => `/api/exchanges/${path(x.vhost, x.name)}`, "delete"),
      },
      sort: "name",
    });
  },
};

views.users = {
  mount: async () => html`<h2>Users</h2><div id="user-list"></div>
    <h2>Add or update a user</h2>
    <form class="inline" id="add-user">
      <label>Name <input name="name" required></label>
      <label>Password <input name="password" type="password" autocomplete="new-password"></label>
      <label>Tags <input name="tags" placeholder="administrator, monitoring, management, policymaker"></label>
      <button type="submit">Save user</button>
    </form>
    <h2>Permissions</h2><div id="perm-list"></div>
    <h2>Set permissions</h2>
    <form class="inline" id="set-perm">
      <label>User <input name="user" required></label>
      <label>Virtual host <select name="vhost">${await vhostOptions("/")}</select></label>
      <label>Configure <input name="configure" value=".*"></label>
      <label>Write <input name="write" value=".*"></label>
      <label>Read <input name="read" value=".*"></label>
      <button type="submit">Set permissions</button>
    </form>`,
  wire() {
    onSubmit("add-user", "save user", async (f) => {
      const body = { tags: f.tags.split(",").map((t) => t.trim()).filter(Boolean).join(",") };
      if (f.password) body.password = f.password;
      await api("PUT", `/api/users/${enc(f.name)}`, body);
      return `user ${f.name} saved`;
    }, true);
    onSubmit("set-perm", "set permissions", async (f) => {
      await api("PUT", `/api/permissions/${path(f.vhost, f.user)}`, { configure: f.configure, write: f.write, read: f.read });
      return `permissions of ${f.user} on ${f.vhost} set`;
    });
  },
  async refresh() {
    const us = (await load("/api/users")) ?? [];
    table("user-list", [
      { label: "name", key: (u) => u.name },
      { label: "tags", key: (u) => tags(u.tags) },
      button("delete", "del", "danger"),
    ], us, {
      actions: {
        del: confirmDelete((u) => `Delete the user ${u.name}?`, (u) => `/api/users/${enc(u.name)}`, "delete"),
      },
      sort: "name",
    });
    const ps = (await load("/api/permissions")) ?? [];
    table("perm-list", [
      { label: "user", key: (p) => p.user },
      { label: "vhost", key: (p) => p.vhost },
      { label: "configure", key: (p) => p.configure },
      { label: "write", key: (p) => p.write },
      { label: "read", key: (p) => p.read },
      button("clear", "del", "danger"),
    ], ps, {
      actions: {
        del: confirmDelete((p) => `Clear the permissions of ${p.user} on ${p.vhost}?`, (p) => `/api/permissions/${path(p.vhost, p.user)}`, "clear"),
      },
      sort: "user",
    });
  },
};

views.policies = {
  mount: async () => html`<h2>Policies</h2><div id="policy-list"></div>
    <h2>Add or update a policy</h2>
    <form class="stack" id="add-policy">
      <label>Virtual host <select name="vhost">${await vhostOptions("/")}</select></label>
      <label>Name <input name="name" required></label>
      <label>Pattern (regex on names) <input name="pattern" required value="^"></label>
      <label>Apply to <select name="apply-to"><option>all</option><option>queues</option><option>exchanges</option></select></label>
      <label>Priority <input name="priority" type="number" value="0"></label>
      <label>Definition (JSON) <textarea name="definition" placeholder='{"max-length": 10000, "dead-letter-exchange": "dlx"}'></textarea></label>
      <button type="submit">Save policy</button>
    </form>`,
  wire() {
    onSubmit("add-policy", "save policy", async (f) => {
      await api("PUT", `/api/policies/${path(f.vhost, f.name)}`, {
        pattern: f.pattern, "apply-to": f["apply-to"], priority: Number(f.priority) || 0,
        definition: parseJson(f.definition, "definition"),
      });
      return `policy ${f.name} saved`;
    });
  },
  async refresh() {
    const ps = (await load("/api/policies")) ?? [];
    table("policy-list", [
      { label: "vhost", key: (p) => p.vhost },
      { label: "name", key: (p) => p.name },
      { label: "pattern", key: (p) => p.pattern },
      { label: "apply to", key: (p) => p["apply-to"] },
      { label: "priority", key: (p) => p.priority, num: true },
      { label: "definition", key: (p) => json(p.definition) },
      button("delete", "del", "danger"),
    ], ps, {
      actions: {
        del: confirmDelete((p) => `Delete the policy ${p.name}?`, (p) => `/api/policies/${path(p.vhost, p.name)}`, "delete"),
      },
      sort: "name",
    });
  },
};

views.vhosts = {
  mount: () => html`<h2>Virtual hosts</h2><div id="vhost-list"></div>
    <h2>Add a virtual host</h2>
    <form class="inline" id="add-vhost"><label>Name <input name="name" required></label>
      <label>Description <input name="description"></label>
      <button type="submit">Add virtual host</button></form>`,
  wire() {
    onSubmit("add-vhost", "add virtual host", async (f) => {
      await api("PUT", `/api/vhosts/${enc(f.name)}`, f.description ? { description: f.description } : {});
      return `virtual host ${f.name} added`;
    }, true);
  },
  async refresh() {
    const vs = (await load("/api/vhosts")) ?? [];
    table("vhost-list", [
      { label: "name", key: (v) => v.name },
      { label: "description", key: (v) => v.description ?? "" },
      { label: "messages", key: (v) => v.messages, num: true },
      { label: "ready", key: (v) => v.messages_ready, num: true },
      { label: "unacked", key: (v) => v.messages_unacknowledged, num: true },
      button("delete", "del", "danger", (v) => v.name !== "/"),
    ], vs, {
      actions: {
        del: confirmDelete((v) => `Delete the virtual host ${v.name} and everything in it?`, (v) => `/api/vhosts/${enc(v.name)}`, "delete"),
      },
      sort: "name",
    });
  },
};

views.definitions = {
  mount: () => html`<h2>Export definitions</h2>
    <p>Users, virtual hosts, permissions, policies, queues, exchanges and bindings as JSON (RabbitMQ's format).</p>
    <p><button id="export" type="button">Download definitions</button></p>
    <h2>Import definitions</h2>
    <form class="stack" id="import">
      <label>File <input type="file" id="import-file" accept=".json,application/json"></label>
      <label>or JSON <textarea name="doc" id="import-doc"></textarea></label>
      <button type="submit">Import</button>
    </form>
    <pre id="import-result"></pre>`,
  wire() {
    $("export").onclick = async () => {
      const d = await attempt("export", () => api("GET", "/api/definitions"));
      if (!d) return;
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([JSON.stringify(d, null, 2)], { type: "application/json" }));
      a.download = `warren-definitions-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.json`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      say("definitions exported");
    };
    onSubmit("import", "import", async (f) => {
      const file = $("import-file").files[0];
      const text = file ? await file.text() : f.doc;
      parseJson(text, "the document");
      const r = await api("POST", "/api/definitions", text);
      $("import-result").textContent = r ? JSON.stringify(r, null, 2) : "";
      return "definitions imported";
    });
  },
  refresh() {},
};

// ---- routing --------------------------------------------------------------------------

function route() {
  const segs = location.hash.replace(/^#\/?/, "").split("/").filter((s, i) => s !== "" || i > 0);
  const params = segs.slice(1).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  const name = segs[0] || "overview";
  if (name === "queues" && params.length === 2) return { view: views.queue, params, nav: "queues" };
  return { view: views[name] || views.overview, params: [], nav: views[name] ? name : "overview" };
}

let current = null;
let timer = null;
let generation = 0;

async function refreshView() {
  const c = current;
  if (!c) return;
  try {
    await c.view.refresh(c.params);
  } catch (e) {
    if (c === current && !(e instanceof Stale)) say(`cannot load this view: ${e.message}`, true);
  }
}

async function show() {
  if (!session.token) return;
  const gen = ++generation;
  const r = route();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${r.nav}`);
  say("");
  current = null;
  let markup;
  try {
    markup = await r.view.mount(r.params);
  } catch (e) {
    markup = html`<p class="alert">${e.message}</p>`;
  }
  if (gen !== generation) return;
  $("view").innerHTML = markup;
  current = r;
  r.view.wire?.(r.params);
  await refreshView();
}

// ---- login / logout -------------------------------------------------------------------

function showLoggedIn(on) {
  $("login").classList.toggle("hidden", on);
  for (const id of ["nav", "who", "app"]) $(id).classList.toggle("hidden", !on);
  $("who-name").textContent = on ? session.user : "";
}

function start() {
  showLoggedIn(true);
  sample();
  clearInterval(sampler);
  sampler = setInterval(sample, SAMPLE_MS);
  clearInterval(timer);
  timer = setInterval(refreshView, REFRESH_MS);
  show();
}

function logout(why = "") {
  session.clear();
  clearInterval(sampler);
  clearInterval(timer);
  samples.length = 0;
  queueSamples.clear();
  current = null;
  $("view").replaceChildren();
  showLoggedIn(false);
  $("login-error").textContent = why;
  $("login-pass").value = "";
  $("login-user").focus();
}

$("login").onsubmit = async (e) => {
  e.preventDefault();
  const user = $("login-user").value;
  const token = basic(user, $("login-pass").value);
  $("login-error").textContent = "";
  try {
    const me = await api("GET", "/api/whoami", undefined, token);
    session.set(me.name, token);
    $("login-pass").value = "";
    start();
  } catch (err) {
    const reason = err.message.replace(/^401 /, "");
    $("login-error").textContent =
      err.status !== 401 ? `Cannot reach the broker: ${err.message}`
      : reason === "Login failed" ? "Login failed: wrong username or password."
      : `Login failed: ${reason}`;
  }
};
$("logout").onclick = () => logout();
window.addEventListener("hashchange", show);

if (session.token) start();
else logout();
