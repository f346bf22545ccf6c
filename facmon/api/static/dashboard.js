// The control-room dashboard: overview, ISA-18.2 alarm list, work-order board, on call, device detail.
// Plain modules, no build step. Live through the API's event stream; times are shown as the API gives them,
// in the facility's time zone.
import { WORDS } from "./i18n.js";

const RANK = { critical: 4, major: 3, minor: 2, warning: 1 };
const ROLE = { viewer: 0, operator: 1, engineer: 2, admin: 3 };
const BOARD = ["open", "assigned", "in_progress", "on_hold", "resolved"];
const OPEN_STATUSES = "open,assigned,in_progress,on_hold,resolved";
const CHARTS = {
  pump: [["pressure_bar", "inlet_pressure_bar"], ["flow_m3h"]],
  power: [["voltage_l1_v", "voltage_l2_v", "voltage_l3_v"], ["current_l1_a", "current_l2_a", "current_l3_a"]],
  elevator: [["state"], ["floor"]],
  smoke: [["battery_pct", "contamination_pct"], ["state"]],
};
const ENUMS = {
  elevator: ["idle", "running", "door_open", "fault", "out_of_service", "inspection"],
  smoke: ["normal", "alarm", "fault", "test"],
};
const COLORS = ["#69b1ff", "#ff9f1a", "#3fb950", "#f5d90a", "#a371f7"];

const state = {
  lang: localStorage.getItem("facmon.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  muted: localStorage.getItem("facmon.muted") === "1",
  view: "overview", me: null, devices: [], alarms: [], orders: [], rules: null,
  device: null, range: "-24h", knownCritical: null, charts: [],
};

let audioContext = null;  // made on the first click: browsers allow sound only after one
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const t = (key, ...args) => (WORDS[state.lang][key] ?? WORDS.en[key] ?? key).replace(/\{(\d)\}/g, (_, i) => args[i]);
// Times come in the facility's zone with their offset: show its wall-clock part.
const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");
const hhmm = (iso) => (iso ? iso.slice(11, 16) : "–");

class SignedOut extends Error {}

async function api(path, { method = "GET", body } = {}) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: body === undefined ? { Accept: "application/json" } : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) throw new SignedOut();
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || `${method} ${path}: HTTP ${r.status}`);
  return data;
}

function showError(e) {
  if (e instanceof SignedOut) { askToSignIn(); return; }
  $("error").textContent = String(e.message || e);
  setTimeout(() => { $("error").textContent = ""; }, 8000);
}

// -- language -----------------------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  $("lang").textContent = state.lang === "zh" ? "English" : "中文";
  // Browsers let a page make sound only after a click in it: until then the button offers to turn it on.
  $("mute").textContent = !audioContext ? t("enable_sound") : state.muted ? t("unmute") : t("mute");
  render();
}

$("lang").addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("facmon.lang", state.lang);
  applyLanguage();
});

$("mute").addEventListener("click", () => {
  if (!audioContext) {
    audio();
    state.muted = false;
    localStorage.setItem("facmon.muted", "0");
    applyLanguage();
    return;
  }
  state.muted = !state.muted;
  localStorage.setItem("facmon.muted", state.muted ? "1" : "0");
  applyLanguage();
});

// -- sign-in ------------------------------------------------------------------------------------------------

function askToSignIn() {
  stopStream();
  if (!$("signin").open) $("signin").showModal();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const r = await fetch("/api/v1/auth/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  if (!r.ok) {
    const problem = await r.json().catch(() => ({}));
    $("signin-error").textContent = problem.detail || `HTTP ${r.status}`;
    return;
  }
  $("signin").close();
  event.target.reset();
  $("signin-error").textContent = "";
  audio();  // the click allows sound from now on
  applyLanguage();
  start();
});

$("logout").addEventListener("click", async () => {
  await fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin" });
  state.me = null;
  askToSignIn();
});

// -- sound: a new critical alarm beeps unless muted ---------------------------------------------------------

function audio() {
  audioContext = audioContext || new AudioContext();
  return audioContext;
}

function beep() {
  if (state.muted || !audioContext) return;
  const ctx = audio();
  for (const offset of [0, 0.3]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(ctx.destination);
    osc.start(ctx.currentTime + offset);
    osc.stop(ctx.currentTime + offset + 0.18);
  }
}

function noticeCriticals() {
  const critical = new Set(state.alarms.filter((a) => a.severity === "critical" && !a.shelved).map((a) => a.id));
  if (state.knownCritical !== null && [...critical].some((id) => !state.knownCritical.has(id))) beep();
  state.knownCritical = critical;
}

// -- data ---------------------------------------------------------------------------------------------------

async function loadAll() {
  const [me, devices] = await Promise.all([api("/api/v1/auth/me"), api("/api/v1/devices?limit=1000")]);
  state.me = me;
  state.devices = devices.items;
  $("who").textContent = `${me.display_name || me.name} (${me.role})`;
  $("logout").hidden = false;
  await loadAlarmsAndOrders();
}

async function loadAlarmsAndOrders() {
  const [alarms, orders, kpis] = await Promise.all([
    api("/api/v1/alarms?state=active&limit=1000"), api(`/api/v1/work-orders?status=${OPEN_STATUSES}&limit=500`),
    api("/api/v1/alarms/kpis"),
  ]);
  state.alarms = alarms.items;
  state.orders = orders.items;
  $("flood").hidden = !kpis.flood;
  noticeCriticals();
  render();
}

let pending = null;
function reloadSoon() {
  clearTimeout(pending);
  pending = setTimeout(() => loadAlarmsAndOrders().catch(showError), 250);
}

// -- live ---------------------------------------------------------------------------------------------------

let stream = null;
function startStream() {
  stopStream();
  // EventSource sends the session cookie and, on reconnecting, Last-Event-ID: nothing missed.
  stream = new EventSource("/api/v1/stream?reading_every=2");
  stream.onopen = () => $("live").classList.add("on");
  stream.onerror = () => {
    $("live").classList.remove("on");
    fetch("/api/v1/auth/me", { credentials: "same-origin" }).then((r) => { if (r.status === 401) askToSignIn(); });
  };
  stream.addEventListener("alarm", reloadSoon);
  stream.addEventListener("work_order", reloadSoon);
  stream.addEventListener("reading", (event) => {
    const reading = JSON.parse(event.data);
    const device = state.devices.find((d) => d.id === reading.device_id);
    if (!device) return;
    device.latest = { ...device.latest, ...reading.latest };
    device.latest_at = reading.ts;
    if (device.status === "stale" || device.status === "offline") device.status = "online";  // it just spoke
    if (state.view === "overview") renderTile(device);
    if (state.view === "device" && state.device?.id === device.id) renderLatest(device);
  });
}

function stopStream() {
  if (stream) stream.close();
  stream = null;
  $("live").classList.remove("on");
}

// -- views --------------------------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const el of document.querySelectorAll(".view")) el.hidden = el.id !== `view-${view}`;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  render();
  if (view === "duty") loadDuty().catch(showError);
}

for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
$("back").addEventListener("click", () => show("overview"));

function render() {
  if (!state.me) return;
  if (state.view === "overview") renderOverview();
  else if (state.view === "alarms") renderAlarms();
  else if (state.view === "work-orders") renderBoard();
  else if (state.view === "device" && state.device) renderDeviceLists();
}

// Overview: sites, buildings, rooms; a tile per device coloured by its worst state.

function worst(deviceId) {
  let found = null;
  for (const a of state.alarms) {
    if (a.device_id !== deviceId || a.suppressed) continue;
    const rank = a.shelved ? 0.5 : RANK[a.severity];
    if (!found || rank > found.rank) found = { rank, cls: a.shelved ? "shelved" : a.severity };
  }
  return found;
}

function tileClass(device) {
  if (device.status === "out_of_service") return "out_of_service";
  const w = worst(device.id);
  if (w) return w.cls;
  return device.status === "online" ? "normal" : device.status;
}

function headline(device) {
  const key = { pump: "pressure_bar", power: "voltage_l1_v", elevator: "state", smoke: "state" }[device.type];
  const value = device.latest?.[key];
  const shown = typeof value === "number" ? value.toFixed(key.endsWith("_v") ? 0 : 2) : t(value ?? "–");
  return `${shown}${key === "pressure_bar" ? " bar" : key.endsWith("_v") ? " V" : ""}`;
}

function tileHtml(device) {
  const status = device.status === "online" ? "" : ` · ${t(device.status)}`;
  return `<span class="name">${esc(device.name)}</span><span class="val">${esc(headline(device))}${esc(status)}</span>`;
}

function renderTile(device) {
  const el = document.querySelector(`.tile[data-device="${CSS.escape(device.id)}"]`);
  if (el) {
    el.className = `tile ${tileClass(device)}`;
    el.innerHTML = tileHtml(device);
  }
}

function renderOverview() {
  const counts = {};
  for (const d of state.devices) counts[d.type] = (counts[d.type] || 0) + 1;
  $("type-counts").innerHTML = Object.entries(counts)
    .map(([type, n]) => `<span>${esc(t(type))} <b>${n}</b></span>`).join("");
  const tree = new Map();
  for (const d of state.devices) {
    const site = tree.get(d.site) || new Map();
    tree.set(d.site, site);
    const building = site.get(d.building) || new Map();
    site.set(d.building, building);
    const room = d.location || "–";
    building.set(room, [...(building.get(room) || []), d]);
  }
  let html = "";
  for (const [site, buildings] of tree) {
    html += `<div class="site"><h2>${esc(site)}</h2>`;
    for (const [building, rooms] of buildings) {
      html += `<div class="building"><h3>${esc(building)}</h3><div class="rooms">`;
      for (const [room, devices] of rooms) {
        html += `<div class="room"><div class="room-name">${esc(room)}</div><div class="tiles">`;
        html += devices.map((d) => `<button type="button" class="tile ${tileClass(d)}" data-device="${esc(d.id)}">${tileHtml(d)}</button>`).join("");
        html += "</div></div>";
      }
      html += "</div></div>";
    }
    html += "</div>";
  }
  $("sites").innerHTML = html;
}

$("sites").addEventListener("click", (event) => {
  const tile = event.target.closest(".tile");
  if (tile) openDevice(tile.dataset.device).catch(showError);
});

// Alarms, ISA-18.2 style: priority, then time; unacknowledged ones flash; one click to acknowledge.

const can = (role) => state.me && ROLE[state.me.role] >= ROLE[role];

function alarmRow(a) {
  const device = state.devices.find((d) => d.id === a.device_id);
  const acts = [];
  if (can("operator")) {
    if (a.state === "active_unacked" || a.state === "returned_unacked") acts.push(`<button type="button" data-act="ack" class="primary">${t("ack")}</button>`);
    if (a.latched && a.state !== "cleared") acts.push(`<button type="button" data-act="reset">${t("reset")}</button>`);
    acts.push(a.shelved ? `<button type="button" data-act="unshelve">${t("unshelve")}</button>` : `<button type="button" data-act="shelve">${t("shelve")}</button>`);
  }
  const status = [t(a.state), a.shelved ? `${t("shelved")} → ${hhmm(a.shelved_until)}` : ""].filter(Boolean).join(" · ");
  return `<tr class="${esc(a.state)}${a.shelved ? " shelved" : ""}" data-alarm="${a.id}">
    <td class="sev ${esc(a.severity)}">${esc(t(a.severity))}</td><td>${when(a.raised_at)}</td>
    <td><a href="#" data-device="${esc(a.device_id)}">${esc(device ? device.name : a.device_id)}</a></td>
    <td>${esc(a.message)}</td><td>${esc(status)}</td><td class="actions">${acts.join(" ")}</td></tr>`;
}

function sortedAlarms(alarms) {
  return [...alarms].filter((a) => !a.suppressed)
    .sort((x, y) => RANK[y.severity] - RANK[x.severity] || Number(x.shelved) - Number(y.shelved) || (x.raised_at < y.raised_at ? 1 : -1));
}

function renderAlarms() {
  const alarms = sortedAlarms(state.alarms);
  $("alarm-count").textContent = `(${alarms.length})`;
  $("alarms").innerHTML = alarms.length ? alarms.map(alarmRow).join("") : `<tr><td class="empty" colspan="6">${t("none")}</td></tr>`;
}

async function alarmAction(event) {
  const link = event.target.closest("a[data-device]");
  if (link) { event.preventDefault(); openDevice(link.dataset.device).catch(showError); return; }
  const button = event.target.closest("button[data-act]");
  if (!button) return;
  const id = Number(button.closest("tr").dataset.alarm);
  const act = button.dataset.act;
  if (act === "shelve") { openShelve(id); return; }
  button.disabled = true;
  try {
    await api(`/api/v1/alarms/${id}/${act}`, { method: "POST", body: {} });
    await loadAlarmsAndOrders();
  } catch (e) { showError(e); button.disabled = false; }
}
$("alarms").addEventListener("click", alarmAction);
$("device-alarms").addEventListener("click", alarmAction);

let shelving = null;
function openShelve(id) {
  const alarm = state.alarms.find((a) => a.id === id);
  shelving = id;
  $("shelve-what").textContent = alarm ? `${alarm.device_id}: ${alarm.message}` : `#${id}`;
  $("shelve-error").textContent = "";
  $("shelve").showModal();
}
$("shelve-cancel").addEventListener("click", () => $("shelve").close());
$("shelve-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await api(`/api/v1/alarms/${shelving}/shelve`, { method: "POST", body: { reason: form.get("reason"), duration: form.get("duration") } });
    $("shelve").close();
    event.target.reset();
    await loadAlarmsAndOrders();
  } catch (e) { $("shelve-error").textContent = String(e.message || e); }
});

// Work-order board: a column per status, SLA countdowns that turn red on breach.

function countdown(order) {
  if (!order.due_at || order.first_response_at) return { text: order.first_response_at ? "" : t("no_due"), late: false };
  const left = Date.parse(order.due_at) - Date.now();
  const span = Math.abs(left) / 60000;
  const text = span >= 120 ? `${Math.round(span / 60)} h` : span >= 1 ? `${Math.floor(span)} min` : `${Math.floor(Math.abs(left) / 1000)} s`;
  return left >= 0 ? { text: t("due_in", text), late: false } : { text: t("late", text), late: true };
}

function card(o) {
  const sla = countdown(o);
  const moves = can("engineer") ? (o.allowed || []).map((to) => `<button type="button" data-to="${to}">${esc(t(`move_${to}`))}</button>`) : [];
  if (can("operator") && ["P1", "P2"].includes(o.priority) && o.status === "open") moves.unshift(`<button type="button" data-ack="1" class="primary">${t("ack_page")}</button>`);
  return `<div class="card" data-work-order="${o.id}">
    <div><span class="prio ${esc(o.priority)}">${esc(o.priority)}</span> <span class="number">${esc(o.number)}</span></div>
    <div>${esc(o.title)}</div>
    <div class="muted">${esc(o.assignee || o.team || "")}</div>
    <div class="sla${sla.late ? " breached" : ""}" data-due="${esc(o.due_at || "")}">${esc(sla.text)}</div>
    <div class="moves">${moves.join("")}</div></div>`;
}

function renderBoard() {
  $("board").innerHTML = BOARD.map((status) => {
    const cards = state.orders.filter((o) => o.status === status);
    return `<div class="column" data-status="${status}"><h2>${t(status)} <span class="count">(${cards.length})</span></h2>${cards.map(card).join("")}</div>`;
  }).join("");
}

setInterval(() => {
  if (state.view !== "work-orders") return;
  for (const el of document.querySelectorAll(".card")) {
    const order = state.orders.find((o) => o.id === Number(el.dataset.workOrder));
    if (!order) continue;
    const sla = countdown(order);
    const slot = el.querySelector(".sla");
    slot.textContent = sla.text;
    slot.classList.toggle("breached", sla.late);
  }
}, 1000);

$("board").addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const id = Number(button.closest(".card").dataset.workOrder);
  try {
    if (button.dataset.ack) {
      await api(`/api/v1/work-orders/${id}/ack`, { method: "POST" });
    } else {
      const to = button.dataset.to;
      const body = { to };
      if (to === "assigned") { body.assignee = prompt(t("ask_assignee")); if (!body.assignee) return; }
      if (to === "resolved" || to === "cancelled") { body.note = prompt(t(`ask_${to}`)); if (!body.note) return; }
      await api(`/api/v1/work-orders/${id}/transition`, { method: "POST", body });
    }
    await loadAlarmsAndOrders();
  } catch (e) { showError(e); }
});

// On call and dead notifications.

async function loadDuty() {
  const [oncall, dead] = await Promise.all([api("/api/v1/oncall/now"), api("/api/v1/notifications?state=dead&limit=50")]);
  $("oncall").innerHTML = oncall.items.length ? oncall.items.map((s) => `<tr data-schedule="${esc(s.schedule)}">
    <td>${esc(s.name || s.schedule)}</td><td>${esc(s.person_name || s.person || t("nobody"))}</td><td>${when(s.until)}</td></tr>`).join("")
    : `<tr><td class="empty" colspan="3">${t("none")}</td></tr>`;
  $("dead-count").textContent = `(${dead.total})`;
  $("dead").innerHTML = dead.items.length ? dead.items.map((n) => `<tr class="dead" data-notification="${n.id}">
    <td>${esc(n.channel)}</td><td>${esc(n.recipient || "")}</td><td>${esc(n.subject)}</td><td>${esc(n.last_error)}</td></tr>`).join("")
    : `<tr><td class="empty" colspan="4">${t("none")}</td></tr>`;
}

// Device detail: latest values, trends with limit bands, its alarms and work orders.

async function openDevice(id) {
  // The single device's answer carries its rules' thresholds, drawn as limit lines.
  state.device = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
  show("device");
  const d = state.device;
  $("device-title").textContent = d.name;
  $("device-meta").textContent = [d.id, d.site, d.building, d.location, d.model, t(d.status)].filter(Boolean).join(" · ");
  renderLatest(d);
  await Promise.all([drawCharts(), renderDeviceLists()]);
}

function renderLatest(d) {
  $("latest").innerHTML = Object.entries(d.latest || {})
    .map(([k, v]) => `<span>${esc(k)} <b>${esc(typeof v === "number" ? +v.toFixed(3) : v)}</b></span>`).join("")
    + `<span>${t("last_seen")} <b>${when(d.last_seen)}</b></span>`;
}

async function renderDeviceLists() {
  const d = state.device;
  if (!d) return;
  const [alarms, orders] = await Promise.all([
    api(`/api/v1/alarms?device=${encodeURIComponent(d.id)}&state=all&limit=20`),
    api(`/api/v1/work-orders?device=${encodeURIComponent(d.id)}&limit=20`),
  ]);
  $("device-alarms").innerHTML = alarms.items.map(alarmRow).join("") || `<tr><td class="empty">${t("none")}</td></tr>`;
  $("device-orders").innerHTML = orders.items.map((o) => `<tr><td>${esc(o.number)}</td><td>${esc(o.priority)}</td>
    <td>${esc(o.title)}</td><td>${esc(t(o.status))}</td><td>${when(o.due_at)}</td></tr>`).join("") || `<tr><td class="empty">${t("none")}</td></tr>`;
}

for (const b of document.querySelectorAll("#ranges button")) {
  b.addEventListener("click", () => { state.range = b.dataset.range; drawCharts().catch(showError); });
}

async function drawCharts() {
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  const d = state.device;
  for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("active", b.dataset.range === state.range);
  const container = $("charts");
  container.innerHTML = "";
  for (const fields of CHARTS[d.type] || []) {
    const enumStates = ENUMS[d.type] && fields[0] === "state" ? ENUMS[d.type] : null;
    const histories = await Promise.all(fields.map((f) => api(
      `/api/v1/devices/${encodeURIComponent(d.id)}/telemetry?field=${f}&start=${state.range}&max_points=720&agg=${enumStates || f === "floor" ? "last" : "mean"}`,
    ).catch(() => null)));
    const usable = histories.filter((h) => h && h.points.length);
    const box = document.createElement("div");
    box.className = "chart";
    box.innerHTML = `<h4>${esc(fields.join(", "))}</h4>`;
    container.append(box);
    if (!usable.length) { box.insertAdjacentHTML("beforeend", `<p class="empty">${t("no_data")}</p>`); continue; }
    const times = [...new Set(usable.flatMap((h) => h.points.map((p) => Date.parse(p.t) / 1000)))].sort((a, b) => a - b);
    const index = new Map(times.map((x, i) => [x, i]));
    const series = usable.map((h) => {
      const values = new Array(times.length).fill(null);
      for (const p of h.points) values[index.get(Date.parse(p.t) / 1000)] = enumStates ? enumStates.indexOf(p.v) : p.v;
      return values;
    });
    const bands = [];
    if (d.type === "power" && fields[0].startsWith("voltage")) {
      // The device's nominal voltage from the API, else the backend's default (DEFAULT_NOMINAL in
      // facmon/facility/telemetry.py), which bounds plausible readings.
      const nominal = Number(d.nominal?.voltage_v) || 230;
      bands.push([nominal * 0.9, t("nominal")], [nominal * 1.1, t("nominal")]);
    } else if (!enumStates) {
      const seen = new Set();
      for (const limit of d.limits || []) {
        if (!fields.includes(limit.field) || seen.has(limit.value)) continue;
        seen.add(limit.value);
        bands.push([limit.value, `${t(limit.severity)} ${limit.kind} ${limit.value}`]);
      }
    }
    // The API's times carry the facility's offset; shift them so uPlot's UTC axis shows facility wall time.
    const offset = usable[0].points[0].t.slice(19);
    const shift = offset === "Z" ? 0 : (offset[0] === "-" ? -1 : 1) * (Number(offset.slice(1, 3)) * 3600 + Number(offset.slice(4, 6)) * 60);
    const span = [Date.parse(usable[0].start) / 1000 + shift, Date.parse(usable[0].stop) / 1000 + shift];
    const data = [times.map((x) => x + shift), ...series];
    // The y range takes in the limit lines, so a reading far from them still shows how far.
    const values = [...series.flat().filter((v) => v !== null), ...bands.map(([v]) => v)];
    const low = Math.min(...values);
    const high = Math.max(...values);
    const pad = (high - low) * 0.08 || 1;
    if (bands.length) box.querySelector("h4").textContent += ` — ${bands.map(([, label]) => label).join(" · ")}`;
    const opts = {
      width: Math.max(320, container.clientWidth - 20), height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "UTC"),
      scales: { x: { time: true, range: () => span }, y: enumStates ? { range: [-0.5, enumStates.length - 0.5] } : { range: () => [low - pad, high + pad] } },
      hooks: { draw: [(u) => drawLimits(u, bands)] },
      axes: [
        // 24-hour wall-clock times of the facility (the data are shifted to it): 08:00, or 11-22 08:00 over days.
        { stroke: "#8b98a5", grid: { stroke: "#2a3542" }, values: (_, ticks) => ticks.map((x) => {
          const iso = new Date(x * 1000).toISOString();
          return span[1] - span[0] > 2 * 86400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
        }) },
        enumStates ? { stroke: "#8b98a5", grid: { stroke: "#2a3542" }, size: 110, splits: () => enumStates.map((_, i) => i), values: (_, ticks) => ticks.map((i) => t(enumStates[i]) || enumStates[i]) }
          : { stroke: "#8b98a5", grid: { stroke: "#2a3542" } },
      ],
      series: [
        {},
        ...usable.map((h, i) => ({ label: h.field, stroke: COLORS[i], width: 1.5, spanGaps: false, paths: enumStates ? uPlot.paths.stepped({ align: 1 }) : undefined })),
      ],
    };
    state.charts.push(new uPlot(opts, data, box));
  }
}

function drawLimits(u, bands) {
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "#ff4d4f";
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1;
  for (const [value] of bands) {
    const y = Math.round(u.valToPos(value, "y", true));
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
  }
  ctx.restore();
}

// -- start --------------------------------------------------------------------------------------------------

async function start() {
  try {
    await loadAll();
    startStream();
  } catch (e) { showError(e); }
}

applyLanguage();
show("overview");
start();
// Now and then everything again: a device goes stale without an event, a shelf runs out.
setInterval(() => { if (state.me) loadAll().catch(showError); }, 30000);
