// Amber's web console: reads and writes through the public HTTP API only.
//
// Every document text goes into the page through textContent (never
// innerHTML), so a stored "<script>" is shown, not run.

const PASSWORD_KEY = "amber.password";
const PAGE_SIZE = 50;
const METRICS_EVERY_MS = 3000;
const CLUSTER_EVERY_MS = 5000;
const MAX_EVENTS = 200;
const SPARK_POINTS = 40;

const $ = (id) => document.getElementById(id);

/** Thrown when the API wants the password: the login form is showing by then. */
class NeedsPassword extends Error {}

/** An application/problem+json answer (RFC 9457) or another failed request. */
class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// ---------------------------------------------------------------- API access

function authHeaders() {
  const password = sessionStorage.getItem(PASSWORD_KEY);
  if (!password) return {};
  // Header values are Latin-1, so fetch() refuses a password beyond it in
  // Bearer: that one goes as Basic (base64 of its UTF-8), which the server takes too.
  if (/^[\x20-\xff]*$/.test(password)) return { Authorization: `Bearer ${password}` };
  const bytes = new TextEncoder().encode(`:${password}`);
  return { Authorization: `Basic ${btoa(String.fromCharCode(...bytes))}` };
}

/** fetch() with the password; 401 shows the login form, errors become Problem. */
async function api(path, options = {}) {
  const headers = { ...authHeaders(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    askPassword(sessionStorage.getItem(PASSWORD_KEY) ? "Wrong password." : "");
    throw new NeedsPassword();
  }
  if (!response.ok) {
    let body = { title: response.statusText };
    try {
      body = await response.json();
    } catch {
      // Not JSON (a proxy's page?): keep the status text.
    }
    throw new Problem(response.status, body);
  }
  return response;
}

const encodeName = (text) => encodeURIComponent(text);

// ---------------------------------------------------------------- helpers

/** A new element with text (always textContent) and optional class. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

const pretty = (value) => JSON.stringify(value, null, 2);

function showError(target, error) {
  if (error instanceof NeedsPassword) return;
  target.className = "error";
  if (error instanceof Problem) {
    const body = error.body;
    const type = body.type ? ` (${body.type})` : "";
    target.textContent = `${error.status} ${body.title || ""}${type}: ${body.detail || ""}`;
  } else {
    target.textContent = String(error.message || error);
  }
}

function formatNumber(value) {
  if (!Number.isFinite(value)) return "–";
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (Math.abs(value) >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// ---------------------------------------------------------------- login

function askPassword(message) {
  stopAll();
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("conn").textContent = "locked";
  $("password").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(PASSWORD_KEY, $("password").value);
  $("password").value = "";
  start();
});

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(PASSWORD_KEY);
  location.reload();
});

// ---------------------------------------------------------------- tables

const state = {
  table: null, // the table being browsed
  next: null, // the scan's `next` parameters, for "More…"
  key: null, // the key whose document is shown
  etag: null, // its ETag (mod revision), for If-Match
};

async function loadTables() {
  const response = await api("/v1/tables?consistency=stale");
  const body = await response.json();
  const list = $("tables");
  list.replaceChildren();
  for (const table of body.tables) {
    const item = el("li");
    const button = el("button", table.name, "link");
    button.type = "button";
    button.addEventListener("click", () => browse(table.name).catch(showKeysError));
    item.append(button, el("span", table.keys, "count"));
    item.dataset.table = table.name;
    if (table.name === state.table) item.classList.add("selected");
    list.append(item);
  }
  $("tables-empty").hidden = body.tables.length > 0;
}

// Many changes in a burst reload the table counts once.
let tablesTimer = null;
function reloadTablesSoon() {
  clearTimeout(tablesTimer);
  tablesTimer = setTimeout(() => loadTables().catch(() => {}), 1000);
}

$("tables-refresh").addEventListener("click", () => loadTables().catch(() => {}));

// ---------------------------------------------------------------- keys

function showKeysError(error) {
  const list = $("keys");
  list.replaceChildren();
  const item = el("li");
  showError(item, error);
  list.append(item);
}

/** Browse `table` from its first key (under the prefix typed, if any). */
async function browse(table) {
  state.table = table;
  state.next = null;
  $("keys-table").textContent = `in ${table}`;
  for (const item of $("tables").children) {
    item.classList.toggle("selected", item.dataset.table === table);
  }
  $("keys").replaceChildren();
  await loadKeys();
}

/** One page of keys; the API's `next` object holds the parameters of the page after it. */
async function loadKeys() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const prefix = $("prefix").value;
  if (prefix) params.set("prefix", prefix);
  for (const [name, value] of Object.entries(state.next || {})) params.set(name, value);
  const response = await api(`/v1/tables/${encodeName(state.table)}?${params}`);
  const page = await response.json();
  const list = $("keys");
  for (const item of page.items) {
    const row = el("li");
    const button = el("button", item.key, "link");
    button.type = "button";
    button.addEventListener("click", () => openKey(state.table, item.key));
    row.dataset.key = item.key;
    row.append(button);
    list.append(row);
  }
  if (!list.children.length) list.append(el("li", "no keys", "muted"));
  state.next = page.next;
  $("more").hidden = !page.more;
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.table) browse(state.table).catch(showKeysError);
});
$("more").addEventListener("click", () => loadKeys().catch(showKeysError));

// ---------------------------------------------------------------- document

function keyPath(table, key) {
  return `/v1/tables/${encodeName(table)}/keys/${encodeName(key)}`;
}

/** Show a document and its revisions from a GET or PATCH answer. */
function showDocument(value, headers) {
  state.etag = headers.get("ETag");
  $("doc").textContent = pretty(value);
  $("meta-revision").textContent = (state.etag || "").replaceAll('"', "");
  $("meta-create").textContent = headers.get("Amber-Create-Revision") || "";
  $("meta-version").textContent = headers.get("Amber-Version") || "";
  const expires = headers.get("Amber-Expires-At");
  if (expires) {
    const left = Math.max(0, (Number(expires) - Date.now()) / 1000);
    const at = new Date(Number(expires)).toISOString();
    $("meta-ttl").textContent = `${left.toFixed(0)} s (expires ${at})`;
  } else {
    $("meta-ttl").textContent = "none";
  }
}

async function openKey(table, key) {
  state.key = { table, key };
  $("doc-key").textContent = `${table} / ${key}`;
  $("patch-result").textContent = "";
  for (const id of ["doc-meta", "doc", "patch-form"]) $(id).hidden = false;
  $("doc-hint").hidden = true;
  for (const item of $("keys").children) {
    item.classList.toggle("selected", item.dataset.key === key);
  }
  try {
    const response = await api(keyPath(table, key));
    showDocument(await response.json(), response.headers);
  } catch (error) {
    $("doc").textContent = "";
    for (const id of ["meta-revision", "meta-create", "meta-version", "meta-ttl"]) {
      $(id).textContent = "";
    }
    showError($("patch-result"), error);
  }
}

$("patch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("patch-result");
  result.className = "";
  let patch;
  try {
    patch = JSON.parse($("patch").value);
  } catch (error) {
    result.className = "error";
    result.textContent = `The patch is not JSON: ${error.message}`;
    return;
  }
  const { table, key } = state.key;
  const headers = { "Content-Type": "application/merge-patch+json" };
  if ($("if-match").checked && state.etag) headers["If-Match"] = state.etag;
  try {
    const response = await api(keyPath(table, key), {
      method: "PATCH",
      headers,
      body: JSON.stringify(patch),
    });
    showDocument(await response.json(), response.headers);
    result.className = "ok";
    result.textContent = `Saved at revision ${$("meta-revision").textContent}.`;
  } catch (error) {
    showError(result, error);
  }
});

// ---------------------------------------------------------------- watch

// fetch() streaming, not EventSource: EventSource cannot send Authorization.
const watch = { controller: null, lastId: null, paused: false, retry: null };

function watchStatus(text) {
  $("watch-status").textContent = text;
}

async function runWatch() {
  const controller = new AbortController();
  watch.controller = controller;
  const headers = { ...authHeaders() };
  // Resume after the last revision delivered whole: no gap, no duplicate.
  if (watch.lastId) headers["Last-Event-ID"] = watch.lastId;
  try {
    const response = await api("/v1/watch?heartbeat=10", { headers, signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // SSE events end with a blank line; the last piece may be incomplete.
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      for (const block of blocks) handleEvent(block);
    }
    watchStatus("stream ended; reconnecting…");
  } catch (error) {
    if (controller.signal.aborted || error instanceof NeedsPassword) return;
    // 410: the revisions after lastId are compacted away; go on from now.
    if (error instanceof Problem && error.status === 410) watch.lastId = null;
    watchStatus(`disconnected (${error.message}); reconnecting…`);
  }
  if (!controller.signal.aborted) watch.retry = setTimeout(runWatch, 2000);
}

/** One SSE event block: comment lines, `event:`, `id:` and `data:` fields. */
function handleEvent(block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) {
      const match = /watching from revision (\d+)/.exec(line);
      if (match) watchStatus(`live from revision ${match[1]}`);
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "id") watch.lastId = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (name === "progress") {
    watchStatus(`live, at revision ${payload.revision}`);
  } else if (name === "problem") {
    // `lagged` or `closed`: the stream ends and runWatch reconnects from lastId.
    watchStatus(`${payload.title || "problem"}: ${payload.detail || ""}`);
  } else {
    addEvent(payload);
  }
}

function addEvent(change) {
  const item = el("li", null, `event ${change.type}`);
  const head = el("div", null, "event-head");
  head.append(
    el("span", `#${change.revision}`, "revision"),
    el("span", change.type, "type"),
    el("span", `${change.table} / ${change.key}`, "event-key"),
  );
  // One line per diff (it wraps): many changes fit the pane.
  item.append(head, el("pre", JSON.stringify(change.diff), "json diff"));
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  reloadTablesSoon();
  // The document on show changed elsewhere: show its new state (a console's own
  // patch is already on show, at that revision).
  const shown = state.key;
  const shownRevision = Number((state.etag || "0").replaceAll('"', ""));
  if (shown && shown.table === change.table && shown.key === change.key &&
      change.revision > shownRevision) {
    openKey(change.table, change.key).catch(() => {});
  }
}

function startWatch() {
  watchStatus("connecting…");
  runWatch();
}

function stopWatch() {
  clearTimeout(watch.retry);
  if (watch.controller) watch.controller.abort();
  watch.controller = null;
}

$("watch-toggle").addEventListener("click", () => {
  watch.paused = !watch.paused;
  $("watch-toggle").textContent = watch.paused ? "Resume" : "Pause";
  if (watch.paused) {
    stopWatch();
    watchStatus("paused");
  } else {
    startWatch();
  }
});
$("watch-clear").addEventListener("click", () => $("events").replaceChildren());

// ---------------------------------------------------------------- cluster

// A server joins a cluster only when started so: one 404 settles it.
let singleNode = false;

async function loadCluster() {
  const box = $("cluster");
  let status = null;
  if (!singleNode) {
    try {
      status = await (await api("/v1/cluster?consistency=stale")).json();
    } catch (error) {
      if (!(error instanceof Problem && error.status === 404)) throw error;
      singleNode = true;
    }
  }
  if (singleNode) {
    // Not in a cluster: say so, with the server's own health.
    const health = await (await api("/health")).json();
    box.replaceChildren(
      el("p", "single node", "single"),
      el("p", `status ${health.status} · revision ${health.revision} · ` +
        `backend ${health.backend} · up ${Math.round(health.uptime_s)} s`, "muted"),
    );
    return;
  }
  const summary = el(
    "p",
    `${status.node_id} is ${status.state} · leader ${status.leader ?? "none"} · ` +
      `term ${status.term} · commit ${status.commit_index} · applied ${status.applied_index}` +
      ` (lag ${status.lag}) · ${status.has_quorum ? "quorum" : "NO QUORUM"}`,
    status.healthy ? "" : "error",
  );
  const table = el("table");
  const header = el("tr");
  for (const title of ["member", "address", "role", "connected", "match index"]) {
    header.append(el("th", title));
  }
  table.append(header);
  for (const member of status.members) {
    const row = el("tr");
    const role = member.id === status.leader ? "leader" : "follower";
    row.append(
      el("td", member.id + (member.self ? " (this node)" : "")),
      el("td", member.address),
      el("td", role),
      el("td", member.connected ? "yes" : "no"),
      el("td", member.match_index ?? (member.self ? status.applied_index : "")),
    );
    table.append(row);
  }
  box.replaceChildren(summary, table);
}

// ---------------------------------------------------------------- metrics

/** Prometheus text exposition: {name: [{labels, value}]} (comments skipped). */
function parseMetrics(text) {
  const samples = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    (samples[match[1]] ||= []).push({ labels: match[2] || "", value: Number(match[3]) });
  }
  return samples;
}

const sum = (samples, name) => (samples[name] || []).reduce((total, s) => total + s.value, 0);

// Each chart: a gauge read as is, or a counter shown as a rate per second.
const CHARTS = [
  { title: "requests/s", metric: "amber_requests_total", rate: true },
  { title: "writes/s (revisions)", metric: "amber_revision", rate: true },
  { title: "WAL bytes/s", metric: "amber_wal_bytes_total", rate: true },
  { title: "keys", metric: "amber_keys" },
  { title: "connections", metric: "amber_connections" },
  { title: "watchers", metric: "amber_watchers" },
];
const series = CHARTS.map(() => []);
let previous = null; // the last poll: {time, totals}

async function pollMetrics() {
  const text = await (await api("/metrics")).text();
  const samples = parseMetrics(text);
  const now = performance.now();
  const totals = CHARTS.map((chart) => sum(samples, chart.metric));
  CHARTS.forEach((chart, index) => {
    let value = totals[index];
    if (chart.rate) {
      if (!previous) return; // a rate needs two polls
      value = Math.max(0, (value - previous.totals[index]) / ((now - previous.time) / 1000));
    }
    series[index].push(value);
    if (series[index].length > SPARK_POINTS) series[index].shift();
  });
  previous = { time: now, totals };
  drawMetrics();
}

const SVG = "http://www.w3.org/2000/svg";

/** A tiny line chart of `points`, scaled to its own maximum. */
function sparkline(points) {
  const width = 120;
  const height = 32;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  const top = Math.max(...points, 1e-9);
  const step = width / Math.max(1, SPARK_POINTS - 1);
  const start = width - step * (points.length - 1); // newest point at the right edge
  const coords = points.map((value, i) => {
    const y = height - 2 - (value / top) * (height - 4);
    return `${(start + i * step).toFixed(1)},${y.toFixed(1)}`;
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  return svg;
}

function drawMetrics() {
  const box = $("metrics");
  box.replaceChildren();
  CHARTS.forEach((chart, index) => {
    const points = series[index];
    const card = el("div", null, "metric");
    card.dataset.metric = chart.metric;
    const last = points.length ? points[points.length - 1] : NaN;
    card.append(el("span", chart.title, "metric-title"), el("span", formatNumber(last), "metric-value"));
    if (points.length) card.append(sparkline(points));
    box.append(card);
  });
}

// ---------------------------------------------------------------- start and stop

const timers = [];

/** Run `task` now and every `ms`, quietly (a failed poll shows on the next one). */
function every(ms, task) {
  const run = () => task().then(
    () => { $("conn").textContent = `connected to ${location.host}`; },
    (error) => {
      if (!(error instanceof NeedsPassword)) $("conn").textContent = `error: ${error.message}`;
    },
  );
  run();
  timers.push(setInterval(run, ms));
}

function stopAll() {
  while (timers.length) clearInterval(timers.pop());
  stopWatch();
}

/** Load the tables (which tells whether a password is needed), then start the live panes. */
async function start() {
  stopAll();
  try {
    await loadTables();
  } catch (error) {
    if (!(error instanceof NeedsPassword)) $("conn").textContent = `error: ${error.message}`;
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = !sessionStorage.getItem(PASSWORD_KEY);
  $("conn").textContent = `connected to ${location.host}`;
  if (!watch.paused) startWatch();
  every(METRICS_EVERY_MS, pollMetrics);
  every(CLUSTER_EVERY_MS, loadCluster);
}

start();
