// agad-stream review console. Every string from Kafka is rendered with textContent or
// an attribute set through the DOM: never innerHTML with data.
"use strict";

const state = { csrf: null, user: null, role: null, alarms: new Map(), order: [], streams: new Map(), streamOffset: 0,
                selected: null, detail: null, streamSelected: null, windowDetail: null, events: null };
const MAX_ALARMS = 2000;
const STREAMS_PAGE = 100;  // rows of the streams table; the server keeps at most --max-streams of them
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);  // strings become text nodes
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 2500);
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "-" : Number(x).toFixed(digits));
const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/\.\d+Z?$/, "") : "-");

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {} };
  if (options.body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
    if (state.csrf) init.headers["X-CSRF-Token"] = state.csrf;
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/login") showLogin();
    throw new Error(data.detail || response.statusText);
  }
  return data;
}

// ---------------------------------------------------------------- login
function showLogin() {
  $("login").hidden = false;
  $("app").hidden = $("nav").hidden = $("logout").hidden = true;
  if (state.events) state.events.close();
}

async function loggedIn(session) {
  Object.assign(state, { csrf: session.csrf, user: session.user, role: session.role });
  $("whoami").textContent = `${session.user} (${session.role})`;
  $("login").hidden = true;
  $("app").hidden = $("nav").hidden = $("logout").hidden = false;
  document.body.classList.toggle("is-admin", session.role === "admin");
  const snapshot = await api("/api/state");
  showStreams(snapshot);
  for (const alarm of [...snapshot.alarms].reverse()) addAlarm(alarm);
  renderAlarms();
  listen(snapshot.seq);
}

function bindLogin() {
  for (const id of ["login-password", "login-token"]) {
    $(id).addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = Object.fromEntries(new FormData(event.target));
      try {
        await loggedIn(await api("/api/login", { body }));
        event.target.reset();
        $("login-error").textContent = "";
      } catch (error) {
        $("login-error").textContent = error.message;
      }
    });
  }
  $("logout").addEventListener("click", async () => {
    await api("/api/logout", { body: {} }).catch(() => {});
    state.csrf = null;
    showLogin();
  });
}

// ---------------------------------------------------------------- live events
function listen(seq) {
  if (state.events) state.events.close();
  const events = new EventSource(`/api/events?after=${seq}`);
  events.addEventListener("stream", (e) => updateStream(JSON.parse(e.data)));
  events.addEventListener("alarm", (e) => { addAlarm(JSON.parse(e.data)); renderAlarmsSoon(); });
  events.addEventListener("label", (e) => applyLabel(JSON.parse(e.data)));
  state.events = events;
}

function addAlarm(alarm) {
  if (!state.alarms.has(alarm.id)) {
    state.order.unshift(alarm.id);
    if (state.order.length > MAX_ALARMS) state.alarms.delete(state.order.pop());
  }
  state.alarms.set(alarm.id, { ...(state.alarms.get(alarm.id) || {}), ...alarm });
  const filter = $("stream-filter");
  if (![...filter.options].some((o) => o.value === alarm.stream)) {
    filter.append(el("option", { value: alarm.stream, text: alarm.stream }));
  }
}

function applyLabel(label) {
  const alarm = state.alarms.get(label.id);
  const status = label.label === 1 ? "confirmed" : "false_alarm";
  if (alarm) Object.assign(alarm, { status, labelled_by: label.labelled_by });
  for (const detail of [state.detail, state.windowDetail]) {
    if (detail && detail.id === label.id) Object.assign(detail, { status, labelled_by: label.labelled_by });
  }
  renderAlarmsSoon();
  if (state.detail && state.detail.id === label.id) renderAlarmDetail();
  if (state.windowDetail && state.windowDetail.id === label.id) renderWindowDetail();
}

let renderPending = false;
function renderAlarmsSoon() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; renderAlarms(); });
}

// ---------------------------------------------------------------- alarm queue
function visibleAlarms() {
  const stream = $("stream-filter").value;
  const pendingOnly = $("pending-only").checked;
  return state.order.map((id) => state.alarms.get(id))
    .filter((a) => (!stream || a.stream === stream) && (!pendingOnly || a.status === "pending" || a.id === state.selected));
}

function renderAlarms() {
  const alarms = visibleAlarms();
  $("alarm-count").textContent = String(alarms.length);
  const list = $("alarm-list");
  list.replaceChildren(...alarms.slice(0, 300).map((a) => el("li", {
    class: a.id === state.selected ? "selected" : "", "data-id": a.id, onclick: () => selectAlarm(a.id),
  }, el("span", { text: a.stream }), el("span", { class: `status-${a.status}`, text: a.status.replace("_", " ") }),
     el("span", { class: "sub", text: `${a.id} · score ${fmt(a.score)} > ${fmt(a.threshold)} · ${when(a.scored_at)}` }))));
  if (!state.selected && alarms.length) selectAlarm(alarms[0].id);
}

async function selectAlarm(id) {
  state.selected = id;
  for (const li of $("alarm-list").children) li.classList.toggle("selected", li.dataset.id === id);
  try {
    const detail = await api(`/api/window?id=${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    state.detail = detail;
    Object.assign(state.detail, { status: state.alarms.get(id)?.status ?? detail.status });
    renderAlarmDetail();
  } catch (error) {
    $("alarm-detail").replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

function renderAlarmDetail() {
  const d = state.detail;
  const buttons = el("div", { class: "actions" },
    el("button", { id: "btn-confirm", class: "confirm", onclick: () => decide("confirm") }, "Confirm anomaly ", el("kbd", { text: "c" })),
    el("button", { id: "btn-false", class: "false-alarm", onclick: () => decide("false_alarm") }, "False alarm ", el("kbd", { text: "f" })),
    el("button", { id: "btn-skip", onclick: () => decide("skip") }, "Skip ", el("kbd", { text: "s" })),
    el("span", { class: "muted", text: "j / k: next / previous" }));
  $("alarm-detail").replaceChildren(...windowHeader(d), ...plot(d), buttons);
}

function windowHeader(d) {
  const status = d.status === "pending" ? "pending" : `${d.status.replace("_", " ")} by ${d.labelled_by ?? "?"}`;
  const facts = el("p", { class: "facts" },
    el("span", {}, "stream ", el("b", { class: "stream-id", text: d.stream })),
    el("span", {}, "score ", el("b", { text: fmt(d.score) }), " / threshold ", el("b", { text: fmt(d.threshold) })),
    el("span", {}, "model ", el("b", { text: String(d.model_version ?? "-") })),
    el("span", {}, "scored ", el("b", { text: when(d.scored_at) })),
    el("span", {}, "status ", el("b", { class: `status-${d.status} window-status`, text: status })));
  const parts = [el("h2", { text: d.id }), facts];
  if (d.reason) parts.push(el("p", { class: "error", text: d.reason }));
  if (d.explain_error) parts.push(el("p", { class: "error", text: `no reconstruction: ${d.explain_error}` }));
  return parts;
}

async function decide(decision) {
  const d = state.detail;
  if (!d) return;
  try {
    await api("/api/labels", { body: { id: d.id, decision } });
  } catch (error) {
    toast(error.message);
    return;
  }
  const alarm = state.alarms.get(d.id);
  if (decision === "skip" && alarm && alarm.status === "pending") alarm.status = "skipped";
  if (decision !== "skip") applyLabel({ id: d.id, label: decision === "confirm" ? 1 : 0, labelled_by: state.user });
  toast(`${d.id}: ${decision.replace("_", " ")}`);
  move(1);
}

function move(step) {
  const alarms = visibleAlarms();
  const at = alarms.findIndex((a) => a.id === state.selected);
  const next = alarms[at + step] || alarms.find((a) => a.status === "pending" && a.id !== state.selected);
  if (next) selectAlarm(next.id);
  renderAlarmsSoon();
}

// ---------------------------------------------------------------- drawing
function plot(d) {
  if (!d.input) return [];
  const shape = [];
  for (let a = d.input; Array.isArray(a); a = a[0]) shape.push(a.length);
  return shape.length === 2 ? d.input.map((_, c) => plot1d(d, c)).flat() : d.input.map((_, c) => plot2d(d, c));
}

function plot1d(d, channel) {
  const x = d.input[channel], r = d.reconstruction[channel], res = d.residual[channel];
  const W = 900, H = 240, RH = 90, pad = 30, n = x.length;
  const lo = Math.min(...x, ...r), hi = Math.max(...x, ...r), span = hi - lo || 1;
  const rmax = Math.max(...res.map(Math.abs)) || 1;
  const px = (i) => pad + (i / Math.max(n - 1, 1)) * (W - 2 * pad);
  const py = (v) => 10 + (1 - (v - lo) / span) * (H - 20);
  const ry = (v) => H + 20 + RH / 2 - (v / rmax) * (RH / 2 - 4);
  const line = (values, y) => values.map((v, i) => `${px(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const root = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${H + RH + 30}`, role: "img" });
  const segments = (d.top_segments || []).filter((s) => s.channel === channel);
  segments.forEach((s, rank) => root.append(svg("rect", {
    class: "segment", x: px(s.start), width: Math.max(px(s.end - 1) - px(s.start), 2), y: 0, height: H + RH + 30,
    "fill-opacity": (0.35 - rank * 0.08).toFixed(2), "data-share": fmt(s.share, 2),
  })));
  root.append(svg("line", { class: "axis", x1: pad, x2: W - pad, y1: ry(0), y2: ry(0) }));
  root.append(svg("polyline", { class: "signal", points: line(x, py) }));
  root.append(svg("polyline", { class: "recon", points: line(r, py) }));
  root.append(svg("polyline", { class: "residual", points: line(res, ry) }));
  const label = svg("text", { x: pad, y: H + 14 });
  label.textContent = `residual x − G(x), channel ${channel}`;
  root.append(label);
  const legend = el("div", { class: "legend" }, el("span", { class: "l-signal", text: "window" }),
    el("span", { class: "l-recon", text: "reconstruction G(x)" }), el("span", { class: "l-residual", text: "residual" }),
    el("span", { class: "l-segment", text: `top segments (${segments.map((s) => fmt(100 * s.share, 0) + "%").join(", ")} of residual energy)` }));
  return [root, legend];
}

function plot2d(d, channel) {
  const wrap = el("div", { class: "heat-pair" });
  const image = d.input[channel], residual = d.residual[channel].map((row) => row.map(Math.abs));
  wrap.append(canvasOf(image, (v) => [v * 255, v * 255, v * 255]));
  wrap.append(canvasOf(residual, (v) => [255, 255 * (1 - v), 255 * (1 - v)]));
  wrap.append(el("p", { class: "muted", text: `channel ${channel}: the window (left) and |x − G(x)| as a heat map (right)` }));
  return wrap;
}

function canvasOf(grid, colour) {
  const h = grid.length, w = grid[0].length, flat = grid.flat();
  const lo = Math.min(...flat), span = (Math.max(...flat) - lo) || 1;
  const canvas = el("canvas", { class: "heat", width: w, height: h });
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  flat.forEach((v, i) => {
    const [r, g, b] = colour((v - lo) / span);
    img.data.set([r, g, b, 255], i * 4);
  });
  ctx.putImageData(img, 0, 0);
  return canvas;
}

// ---------------------------------------------------------------- streams view
// One page of the streams kept by the server, by name; live updates redraw the rows on it, and a stream
// that is not on it (a new one, or another page's) reloads the page at most once a second.
function showStreams(page) {
  state.streamOffset = page.streams_offset;
  state.streams = new Map(page.streams.map((row) => [row.stream, row]));
  $("streams").tBodies[0].replaceChildren(...page.streams.map((row) => {
    const tr = el("tr", { onclick: () => openStream(row.stream) });
    tr.dataset.stream = row.stream;
    fillStreamRow(tr, row);
    return tr;
  }));
  const last = page.streams_offset + page.streams.length, total = page.streams_total;
  const kept = total >= page.streams_kept_max ? ` (the ${total} most recently seen are kept)` : "";
  $("streams-range").textContent = total ? `streams ${page.streams_offset + 1}–${last} of ${total}${kept}` : "no streams yet";
  $("streams-prev").disabled = page.streams_offset === 0;
  $("streams-next").disabled = last >= total;
}

async function loadStreams(offset) {
  const page = await api(`/api/streams?offset=${Math.max(0, offset)}&limit=${STREAMS_PAGE}`);
  if (!page.streams.length && page.streams_total) return loadStreams(page.streams_total - STREAMS_PAGE);  // it shrank
  showStreams(page);
}

function fillStreamRow(tr, row) {
  const flagged = row.last_score > row.threshold;
  tr.replaceChildren(el("td", { class: "stream-id", text: row.stream }), el("td", { text: String(row.windows) }),
    el("td", { text: String(row.alarms) }),
    el("td", { class: flagged ? "flag" : "", text: `${fmt(row.last_score)} / ${fmt(row.threshold)} (${row.threshold_mode ?? "global"})` }),
    el("td", { text: String(row.model_version ?? "-") }), el("td", { text: when(row.last_at) }));
}

function updateStream(row) {
  if (state.streamSelected === row.stream) refreshStreamWindowsSoon();
  if (!state.streams.has(row.stream)) { refreshStreamsSoon(); return; }
  state.streams.set(row.stream, row);
  const tr = [...$("streams").tBodies[0].rows].find((r) => r.dataset.stream === row.stream);
  if (tr) fillStreamRow(tr, row);
}

let streamsTimer = null;
function refreshStreamsSoon() {
  if (!streamsTimer) streamsTimer = setTimeout(() => { streamsTimer = null; loadStreams(state.streamOffset).catch(() => {}); }, 1000);
}

let streamTimer = null;
function refreshStreamWindowsSoon() {
  if (!streamTimer) streamTimer = setTimeout(() => { streamTimer = null; openStream(state.streamSelected); }, 1000);
}

async function openStream(stream) {
  state.streamSelected = stream;
  $("stream-title").textContent = `Recent windows of ${stream}`;
  const rows = await api(`/api/stream-windows?stream=${encodeURIComponent(stream)}`);
  $("stream-windows").replaceChildren(...rows.map((w) => el("li", {
    "data-id": w.id, class: state.windowDetail && state.windowDetail.id === w.id ? "selected" : "",
    onclick: () => openWindow(w.id),
  }, el("span", { text: w.id }), el("span", { class: w.is_anomaly ? "flag" : "muted", text: w.is_anomaly ? "flagged" : "normal" }),
     el("span", { class: "sub", text: `score ${fmt(w.score)} / ${fmt(w.threshold)}${w.has_values ? "" : " · values not kept"}${w.label === 1 ? " · marked anomaly" : ""}` }))));
}

async function openWindow(id) {
  try {
    state.windowDetail = await api(`/api/window?id=${encodeURIComponent(id)}`);
    renderWindowDetail();
  } catch (error) {
    $("window-detail").replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

function renderWindowDetail() {
  const d = state.windowDetail;
  const mark = el("button", { id: "btn-missed", class: "confirm", onclick: () => markMissed() }, "Mark as missed anomaly ", el("kbd", { text: "m" }));
  mark.disabled = d.status === "confirmed";
  $("window-detail").replaceChildren(...windowHeader(d), ...plot(d), el("div", { class: "actions" }, mark));
}

async function markMissed() {
  const d = state.windowDetail;
  if (!d || d.status === "confirmed") return;
  try {
    await api("/api/labels", { body: { id: d.id, decision: "missed" } });
    applyLabel({ id: d.id, label: 1, labelled_by: state.user });
    toast(`${d.id}: marked as a missed anomaly`);
  } catch (error) {
    toast(error.message);
  }
}

// ---------------------------------------------------------------- models and health
async function showModels() {
  const data = await api("/api/models");
  const admin = state.role === "admin";
  $("models-info").textContent = data.registry ? `registry ${data.registry}` : `fixed model ${data.current} (no registry)`;
  $("rollback").hidden = !admin || !data.registry;
  $("models").tBodies[0].replaceChildren(...data.versions.map((v) => {
    const figures = v.candidate || {};
    const action = admin && v.version !== data.current
      ? el("button", { class: "promote", "data-version": String(v.version), onclick: () => switchModel("/api/models/promote", { version: v.version }) }, `Promote ${v.version}`)
      : "";
    return el("tr", {}, el("td", { text: String(v.version) }), el("td", { text: v.version === data.current ? "current" : "" }),
      el("td", { text: String(v.decision ?? "published") }), el("td", { text: String(v.parent ?? "-") }),
      el("td", { text: fmt(figures.auroc) }), el("td", { text: fmt(figures.recall) }), el("td", { text: fmt(figures.fpr) }),
      el("td", { text: new Date(v.created * 1000).toLocaleString() }), el("td", {}, action));
  }));
}

async function switchModel(path, body) {
  try {
    const result = await api(path, { body });
    toast(`version ${result.current} is current (was ${result.previous})`);
  } catch (error) {
    toast(error.message);
  }
  showModels();
}

async function showHealth() {
  const h = await api("/api/health");
  const rows = [["Kafka feed", h.feed_running ? "running" : "stopped"], ["metrics", h.metrics_url || "not given (--metrics-url)"]];
  if (h.metrics_error) rows.push(["error", h.metrics_error]);
  if (h.scored !== undefined) {
    rows.push(["consumer lag", String(h.consumer_lag)], ["windows scored", String(h.scored)],
      ["throughput", h.throughput_per_s === null ? "(next refresh)" : `${fmt(h.throughput_per_s, 1)} windows/s`],
      ["alarms", String(h.anomalies)], ["served version", String(h.model_version)],
      ["dead letters", Object.entries(h.dead_letters).map(([k, v]) => `${k}: ${v}`).join(", ") || "none"]);
  }
  $("health").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

// ---------------------------------------------------------------- navigation and keys
let healthTimer = null;
function showView(name) {
  for (const button of $("nav").children) button.classList.toggle("active", button.dataset.view === name);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  clearInterval(healthTimer);
  if (name === "models") showModels().catch((e) => toast(e.message));
  if (name === "health") { showHealth().catch((e) => toast(e.message)); healthTimer = setInterval(() => showHealth().catch(() => {}), 5000); }
}

function onKey(event) {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$("view-alarms").hidden) {
    const actions = { c: () => decide("confirm"), f: () => decide("false_alarm"), s: () => decide("skip"),
                      j: () => move(1), k: () => move(-1), ArrowDown: () => move(1), ArrowUp: () => move(-1) };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  } else if (!$("view-streams").hidden && event.key === "m") {
    markMissed();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  bindLogin();
  for (const button of $("nav").children) button.addEventListener("click", () => showView(button.dataset.view));
  $("stream-filter").addEventListener("change", () => { state.selected = null; renderAlarms(); });
  $("pending-only").addEventListener("change", renderAlarms);
  $("rollback").addEventListener("click", () => switchModel("/api/models/rollback", {}));
  $("streams-prev").addEventListener("click", () => loadStreams(state.streamOffset - STREAMS_PAGE).catch((e) => toast(e.message)));
  $("streams-next").addEventListener("click", () => loadStreams(state.streamOffset + STREAMS_PAGE).catch((e) => toast(e.message)));
  document.addEventListener("keydown", onKey);
  api("/api/session").then(loggedIn).catch(showLogin);
});
