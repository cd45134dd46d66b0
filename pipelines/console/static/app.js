// agad-stream review console. Every string from Kafka is rendered with textContent or
// an attribute set through the DOM: never innerHTML with data.
"use strict";

const state = { csrf: null, user: null, role: null, alarms: new Map(), order: [], streams: new Map(), streamOffset: 0, streamWanted: 0,
                selected: null, detail: null, streamSelected: null, windowDetail: null, events: null,
                queue: null, alarmPage: 0, arrived: [] };
const MAX_ALARMS = 2000;
const ALARMS_PAGE = 300;  // alarms drawn per page of the queue; Previous/Next reach every other one
const REORDER_MS = 2000;  // a queue order other than newest is refreshed this long after alarms or labels arrive
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

// A window's recording time (its ts, as the producer gave it): a string as given, with the time zone it
// names; a number as epoch seconds, in UTC.
function recorded(ts) {
  if (ts === null || ts === undefined) return "not given";
  if (typeof ts === "number") return `${new Date(ts * 1000).toISOString().replace("T", " ").replace("Z", "")} UTC`;
  return String(ts);
}

// The same ts in seconds, to place windows on a time line: null when it names no time.
function tsSeconds(ts) {
  if (typeof ts === "number") return ts;
  if (typeof ts !== "string" || !ts.trim()) return null;
  const seconds = Number(ts) || (Number(ts) === 0 ? 0 : Date.parse(ts) / 1000);
  return Number.isFinite(seconds) ? seconds : null;
}

// A round tick spacing (1, 2 or 5 times a power of ten) giving about `count` ticks over `range`.
function tickStep(range, count) {
  const rough = (range || 1) / count, power = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
}
const tickText = (value, step) => (Math.abs(value) < step * 1e-6 ? 0 : value).toFixed(Math.max(0, -Math.floor(Math.log10(step))));
const unitOf = (axis) => (axis && axis.unit ? ` (${axis.unit})` : "");

function svgText(attrs, text) {
  const node = svg("text", attrs);
  node.textContent = text;
  return node;
}

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
  showQueue(snapshot.queue);
  for (const alarm of [...snapshot.alarms].reverse()) addAlarm(alarm);
  state.arrived = snapshot.arrival.filter((id) => state.alarms.has(id));
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
  events.addEventListener("alarm", (e) => { addAlarm(JSON.parse(e.data)); renderAlarmsSoon(); reorderSoon(); });
  events.addEventListener("label", (e) => applyLabel(JSON.parse(e.data)));
  state.events = events;
}

function addAlarm(alarm) {
  if (!state.alarms.has(alarm.id)) {
    state.order.unshift(alarm.id);
    state.arrived.push(alarm.id);
    if (state.arrived.length > MAX_ALARMS) {  // the oldest goes, as on the server, whatever the order
      const oldest = state.arrived.shift();
      state.alarms.delete(oldest);
      state.order = state.order.filter((id) => id !== oldest);
    }
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
  reorderSoon();
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
  const alarms = visibleAlarms(), hidden = state.order.length - alarms.length;
  $("alarm-count").textContent = `${alarms.length} alarm${alarms.length === 1 ? "" : "s"}` +
    (hidden > 0 ? ` (filters hide ${hidden} of ${state.order.length})` : "");
  const pages = Math.max(1, Math.ceil(alarms.length / ALARMS_PAGE));
  state.alarmPage = Math.min(state.alarmPage, pages - 1);
  const first = state.alarmPage * ALARMS_PAGE, page = alarms.slice(first, first + ALARMS_PAGE);
  $("alarm-range").textContent = alarms.length ? `${first + 1}–${first + page.length} of ${alarms.length}` : "";
  $("alarms-prev").disabled = state.alarmPage === 0;
  $("alarms-next").disabled = state.alarmPage >= pages - 1;
  const list = $("alarm-list");
  list.replaceChildren(...page.map((a) => el("li", {
    class: a.id === state.selected ? "selected" : "", "data-id": a.id, onclick: () => selectAlarm(a.id),
  }, el("span", { class: "name", title: a.stream, text: a.stream }),
     el("span", { class: `status-${a.status}`, text: a.status.replace("_", " ") }),
     el("span", { class: "sub", text: `${a.id} · score ${fmt(a.score)} > ${fmt(a.threshold)} · ${when(a.scored_at)}` }))));
  if (!state.selected && alarms.length) selectAlarm(alarms[0].id);
}

// ---------------------------------------------------------------- queue order (newest, score, uncertain, diverse)
function showQueue(queue) {
  state.queue = queue;
  const choice = $("queue-order");
  if (!choice.options.length) {
    for (const order of queue.orders) {
      choice.append(el("option", { value: order, text: order + (order === queue.default ? " (default)" : "") }));
    }
  }
  choice.value = queue.order;
  $("queue-note").textContent = `Ordered ${queue.description}; every alarm stays in the list`;
}

async function reorder(order) {
  const answer = await api(`/api/queue?order=${encodeURIComponent(order)}`);
  const ranked = answer.ids.filter((id) => state.alarms.has(id)), listed = new Set(ranked);
  // alarms that came after the server ranked them stay on top until the next refresh: none goes missing
  state.order = [...state.order.filter((id) => !listed.has(id)), ...ranked];
  showQueue(answer.queue);
  renderAlarms();
}

function reorderSoon() {
  if (!state.queue || state.queue.order === "newest" || reorderSoon.timer) return;
  reorderSoon.timer = setTimeout(() => {
    reorderSoon.timer = null;
    reorder(state.queue.order).catch((e) => toast(e.message));
  }, REORDER_MS);
}

function showAlarmPage(step) {
  state.alarmPage = Math.max(0, state.alarmPage + step);
  renderAlarms();
}

async function selectAlarm(id) {
  const shown = state.selected === id && state.detail && state.detail.id === id;
  state.selected = id;
  const at = visibleAlarms().findIndex((a) => a.id === id);
  if (at >= 0 && Math.floor(at / ALARMS_PAGE) !== state.alarmPage) {  // keys moved past the page: turn it
    state.alarmPage = Math.floor(at / ALARMS_PAGE);
    renderAlarmsSoon();
  }
  for (const li of $("alarm-list").children) li.classList.toggle("selected", li.dataset.id === id);
  if (shown) return;  // already drawn: redrawing would drop a typed type or note
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
  const types = d.anomaly_types;  // AAMI classes for ECG; free text otherwise
  const type = types
    ? el("select", { id: "anomaly-type", onchange: (e) => e.target.blur() }, el("option", { value: "", text: "anomaly type (optional)" }),
      ...Object.entries(types).map(([code, name]) => el("option", { value: code, text: `${code}: ${name}` })))
    : el("input", { id: "anomaly-type", placeholder: "anomaly type (optional)", maxlength: "64" });
  const note = el("input", { id: "note", class: "note", placeholder: "note (optional)", maxlength: "2000" });
  for (const input of [type, note]) input.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === "Escape") e.target.blur(); });
  const label = el("div", { class: "actions" }, type, note);
  const buttons = el("div", { class: "actions" },
    el("button", { id: "btn-confirm", class: "confirm", onclick: () => decide("confirm") }, "Confirm anomaly ", el("kbd", { text: "c" })),
    el("button", { id: "btn-false", class: "false-alarm", onclick: () => decide("false_alarm") }, "False alarm ", el("kbd", { text: "f" })),
    el("button", { id: "btn-unsure", onclick: () => decide("unsure") }, "Not sure ", el("kbd", { text: "u" })),
    el("button", { id: "btn-skip", onclick: () => decide("skip") }, "Skip ", el("kbd", { text: "s" })),
    el("span", { class: "muted", text: "j / k: next / previous" }));
  $("alarm-detail").replaceChildren(...windowHeader(d), ...plot(d), ...plotContext(d), label, buttons);
}

function windowHeader(d) {
  const status = d.status === "pending" ? "pending" : `${d.status.replace("_", " ")}${d.labelled_by ? ` by ${d.labelled_by}` : ""}`;
  const context = d.score_context || {};
  const meaning = [context.ratio !== null && context.ratio !== undefined ? `${fmt(context.ratio, 2)}× the threshold` : null,
    context.percentile !== null && context.percentile !== undefined
      ? `percentile ${fmt(context.percentile, 0)} among the stream's last ${context.of} scores` : null].filter(Boolean);
  const facts = el("p", { class: "facts" },
    el("span", {}, "stream ", el("b", { class: "stream-id", text: d.stream })),
    el("span", {}, "score ", el("b", { text: fmt(d.score) }), " / threshold ", el("b", { text: fmt(d.threshold) }),
      meaning.length ? el("span", { class: "score-meaning", text: ` = ${meaning.join(", ")}` }) : ""),
    el("span", {}, "model ", el("b", { text: String(d.model_version ?? "-") })),
    el("span", {}, "recorded ", el("b", { class: "recorded-at", text: recorded(d.ts) })),
    el("span", {}, "scored ", el("b", { class: "scored-at", text: `${when(d.scored_at)} UTC` })),
    el("span", {}, "status ", el("b", { class: `status-${d.status} window-status`, text: status })));
  const parts = [el("h2", { text: d.id }), facts];
  if (d.reason) parts.push(el("p", { class: "error", text: d.reason }));
  if (d.explain_error) parts.push(el("p", { class: "error", text: `no reconstruction: ${d.explain_error}` }));
  return parts;
}

async function decide(decision) {
  const d = state.detail;
  if (!d) return;
  const body = { id: d.id, decision, note: $("note").value || null };
  if (decision === "confirm") body.anomaly_type = $("anomaly-type").value || null;
  try {
    await api("/api/labels", { body });
  } catch (error) {
    toast(error.message);
    return;
  }
  const alarm = state.alarms.get(d.id);
  const unlabelled = { skip: "skipped", unsure: "unsure" }[decision];
  if (unlabelled && alarm && alarm.status === "pending") alarm.status = unlabelled;
  if (!unlabelled) applyLabel({ id: d.id, label: decision === "confirm" ? 1 : 0, labelled_by: state.user });
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

// A 1D window on its axes: time (ms, from the sampling rate) or sample along x, amplitude in the
// modality's unit (mV for ECG) on the window and on the residual's own scale below it.
function plot1d(d, channel) {
  const x = d.input[channel], r = d.reconstruction[channel], res = d.residual[channel];
  const ax = d.axes || { x: { label: "sample", step: null }, y: { label: "value" } };
  const W = 900, H = 240, RH = 90, left = 64, right = 12, n = x.length, step = ax.x.step || 1;
  const rTop = H + 24, bottom = rTop + RH, total = bottom + 38;
  const lo = Math.min(...x, ...r), hi = Math.max(...x, ...r), span = hi - lo || 1;
  const rmax = Math.max(...res.map(Math.abs)) || 1;
  const px = (i) => left + (i / Math.max(n - 1, 1)) * (W - left - right);
  const py = (v) => 10 + (1 - (v - lo) / span) * (H - 20);
  const ry = (v) => rTop + RH / 2 - (v / rmax) * (RH / 2 - 4);
  const line = (values, y) => values.map((v, i) => `${px(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const root = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${total}`, role: "img" });
  const segments = (d.top_segments || []).filter((s) => s.channel === channel);
  segments.forEach((s, rank) => root.append(svg("rect", {
    class: "segment", x: px(s.start), width: Math.max(px(s.end - 1) - px(s.start), 2), y: 0, height: bottom,
    "fill-opacity": (0.35 - rank * 0.08).toFixed(2), "data-share": fmt(s.share, 2),
  })));
  const xStep = tickStep((n - 1) * step, 8);
  for (let t = 0; t <= (n - 1) * step + 1e-9; t += xStep) {
    const at = px(t / step);
    root.append(svg("line", { class: "grid", x1: at, x2: at, y1: 0, y2: bottom }));
    root.append(svgText({ class: "x-tick", x: at, y: bottom + 14, "text-anchor": "middle" }, tickText(t, xStep)));
  }
  root.append(svgText({ class: "x-title", x: (left + W - right) / 2, y: bottom + 32, "text-anchor": "middle" },
    `${ax.x.label}${unitOf(ax.x)}`));
  const yStep = tickStep(span, 8);
  for (let v = Math.ceil(lo / yStep) * yStep; v <= hi + 1e-9; v += yStep) {
    root.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: py(v), y2: py(v) }));
    root.append(svgText({ class: "y-tick", x: left - 4, y: py(v) + 4, "text-anchor": "end" }, tickText(v, yStep)));
  }
  root.append(svgText({ class: "y-title", transform: `translate(12 ${H / 2}) rotate(-90)`, "text-anchor": "middle" },
    `${ax.y.label}${unitOf(ax.y)}`));
  const rPower = 10 ** Math.floor(Math.log10(rmax)), rStep = [5, 2, 1].map((m) => m * rPower).find((s) => s <= rmax);
  for (const v of [-rStep, 0, rStep]) {
    root.append(svg("line", { class: v ? "grid" : "axis", x1: left, x2: W - right, y1: ry(v), y2: ry(v) }));
    root.append(svgText({ class: "r-tick", x: left - 4, y: ry(v) + 4, "text-anchor": "end" }, tickText(v, rStep)));
  }
  root.append(svg("polyline", { class: "signal", points: line(x, py) }));
  root.append(svg("polyline", { class: "recon", points: line(r, py) }));
  root.append(svg("polyline", { class: "residual", points: line(res, ry) }));
  root.append(svgText({ x: left, y: H + 16 }, `residual x − G(x)${unitOf(ax.y)}, channel ${channel}`));
  const legend = el("div", { class: "legend" }, el("span", { class: "l-signal", text: "window" }),
    el("span", { class: "l-recon", text: "reconstruction G(x)" }), el("span", { class: "l-residual", text: "residual" }),
    el("span", { class: "l-segment", text: `top segments (${segments.map((s) => fmt(100 * s.share, 0) + "%").join(", ")} of residual energy)` }));
  return [root, legend];
}

// A 2D window (log-mel patch or image) and |x − G(x)|, with what their rows and columns are. A log-mel
// patch is drawn with its lowest band at the bottom.
function plot2d(d, channel) {
  const ax = d.axes || { x: { label: "column" }, y: { label: "row" } };
  const flip = (grid) => (ax.y.low_first ? [...grid].reverse() : grid);
  const image = flip(d.input[channel]), residual = flip(d.residual[channel]).map((row) => row.map(Math.abs));
  const rows = image.length, cols = image[0].length;
  const xSpan = ax.x.step ? `${fmt(0, 0)}–${fmt((cols - 1) * ax.x.step, 0)}` : `0–${cols - 1}`;
  const ySpan = ax.y.low_first ? `${rows - 1} (top) to 0 (bottom)` : `0 (top) to ${rows - 1} (bottom)`;
  const axesText = `x: ${ax.x.label}${unitOf(ax.x)} ${xSpan}; y: ${ax.y.label} ${ySpan}`;
  return el("div", { class: "heat-pair" },
    canvasOf(image, (v) => [v * 255, v * 255, v * 255]), canvasOf(residual, (v) => [255, 255 * (1 - v), 255 * (1 - v)]),
    el("p", { class: "muted axes-2d", text: `channel ${channel}: the window (left) and |x − G(x)| as a heat map (right); ${axesText}` }));
}

// The neighbouring input windows of the same stream, as recorded (channel 0), with this one marked: placed
// at their recording times when each ts names one (so a premature beat and its compensatory pause show),
// else side by side in arrival order.
function plotContext(d) {
  const near = d.neighbours || [];
  if (!d.input || !Array.isArray(d.input[0]) || Array.isArray(d.input[0][0])) return [];  // 1D windows only
  if (near.length < 2) {
    return [el("p", { class: "muted context-note", text: "Neighbouring windows: none kept (the console keeps them with --windows-topic)." })];
  }
  const ax = d.axes || { x: { step: null }, y: {} }, timed = ax.x.unit === "ms";
  const signals = near.map((w) => (Array.isArray(w.values[0]) ? w.values[0] : w.values));
  const n = signals[0].length, step = ax.x.step || 1, seconds = near.map((w) => tsSeconds(w.ts));
  const byTime = timed && seconds.every((s, k) => s !== null && (k === 0 || s > seconds[k - 1]));
  const starts = near.map((_, k) => (byTime ? (seconds[k] - seconds[0]) * 1000 : k * n * step * 1.05));
  const end = starts[starts.length - 1] + (n - 1) * step;
  const W = 900, H = 130, left = 64, right = 12, bottom = H - 34;
  const all = signals.flat(), lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1;
  const px = (t) => left + (t / end) * (W - left - right);
  const py = (v) => 6 + (1 - (v - lo) / span) * (bottom - 12);
  const root = svg("svg", { class: "plot context", viewBox: `0 0 ${W} ${H}`, role: "img" });
  near.forEach((w, k) => {
    const points = signals[k].map((v, i) => `${px(starts[k] + i * step).toFixed(1)},${py(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { class: `context-window${w.offset === 0 ? " current" : ""}${w.is_anomaly ? " flagged" : ""}`,
                                  points, "data-id": w.id }));
    if (byTime && k > 0) {
      root.append(svgText({ class: "gap", x: px((starts[k - 1] + starts[k]) / 2 + ((n - 1) * step) / 2), y: bottom + 12,
                            "text-anchor": "middle" }, `${Math.round(starts[k] - starts[k - 1])} ms`));
    }
  });
  root.append(svgText({ class: "y-tick", x: left - 4, y: py(hi) + 4, "text-anchor": "end" }, fmt(hi, 2)));
  root.append(svgText({ class: "y-tick", x: left - 4, y: py(lo) + 4, "text-anchor": "end" }, fmt(lo, 2)));
  const order = byTime ? "at their recording times, gaps between starts in ms" : "in arrival order (their ts name no times)";
  const caption = `${near.filter((w) => w.offset < 0).length} windows before, ${near.filter((w) => w.offset > 0).length} after ` +
    `this one (bold), as recorded${unitOf(ax.y)}, ${order}; red: flagged`;
  root.append(svgText({ x: left, y: H - 4 }, caption));
  return [root];
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
  state.streamOffset = state.streamWanted = page.streams_offset;
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

// Pages are counted from the one last asked for, so two quick clicks on Next move two pages, and an
// answer overtaken by a later request is dropped.
async function loadStreams(offset) {
  const wanted = state.streamWanted = Math.max(0, offset);
  const page = await api(`/api/streams?offset=${wanted}&limit=${STREAMS_PAGE}`);
  if (wanted !== state.streamWanted) return;
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
  if (!streamsTimer) streamsTimer = setTimeout(() => { streamsTimer = null; loadStreams(state.streamWanted).catch(() => {}); }, 1000);
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
  $("window-detail").replaceChildren(...windowHeader(d), ...plot(d), ...plotContext(d), el("div", { class: "actions" }, mark));
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
// how many of a retrain's labels disagreed with earlier ones or with the model (see gate.py)
function conflictsText(c) {
  if (!c) return "-";
  return `${c.both_ways ?? 0} labelled both ways, ${c.near_identical ?? 0} near-identical, ` +
    `${c.contradicting ?? 0} of ${c.new_labels ?? 0} new contradict the model`;
}

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
      el("td", { class: "conflicts", text: conflictsText(v.label_conflicts) }),
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
    const actions = { c: () => decide("confirm"), f: () => decide("false_alarm"), s: () => decide("skip"), u: () => decide("unsure"),
                      j: () => move(1), k: () => move(-1), ArrowDown: () => move(1), ArrowUp: () => move(-1) };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  } else if (!$("view-streams").hidden && event.key === "m") {
    markMissed();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  bindLogin();
  for (const button of $("nav").children) button.addEventListener("click", () => showView(button.dataset.view));
  // a control keeps the focus after a change, and the keys would go to it: hand them back to the page
  $("stream-filter").addEventListener("change", (e) => { e.target.blur(); state.selected = null; renderAlarms(); });
  $("pending-only").addEventListener("change", (e) => { e.target.blur(); renderAlarms(); });
  $("queue-order").addEventListener("change", (e) => {
    e.target.blur();
    state.alarmPage = 0;
    reorder(e.target.value).catch((error) => toast(error.message));
  });
  $("alarms-prev").addEventListener("click", () => showAlarmPage(-1));
  $("alarms-next").addEventListener("click", () => showAlarmPage(1));
  $("rollback").addEventListener("click", () => switchModel("/api/models/rollback", {}));
  $("streams-prev").addEventListener("click", () => loadStreams(state.streamWanted - STREAMS_PAGE).catch((e) => toast(e.message)));
  $("streams-next").addEventListener("click", () => loadStreams(state.streamWanted + STREAMS_PAGE).catch((e) => toast(e.message)));
  document.addEventListener("keydown", onKey);
  api("/api/session").then(loggedIn).catch(showLogin);
});
