// Team panel: renders the server-sent `presence` and `hotlines` events. Built with
// textContent only (names are data, never markup). Reconnects by itself: EventSource retries
// after network errors, and a stream the browser gave up on is reopened here.
"use strict";

// The page's language and texts (ari_app/web/i18n.py), chosen by the server from the
// browser's Accept-Language.
const LANG = document.documentElement.lang || "de";
const T = JSON.parse(document.getElementById("texts").textContent);
const LABELS = { available: T.available, on_call: T.on_call, unavailable: T.unavailable };
const REOPEN_MS = 2000;
let source = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setConnection(state, text) {
  const node = document.getElementById("connection");
  node.dataset.state = state;
  node.textContent = text;
  document.getElementById("panel").classList.toggle("stale", state !== "live");
}

function renderAgents(agents) {
  const list = document.getElementById("agents");
  const counts = { available: 0, on_call: 0, unavailable: 0 };
  const items = agents.map((agent) => {
    const presence = agent.presence in LABELS ? agent.presence : "unavailable";
    counts[presence] += 1;
    const item = el("li", "agent");
    item.dataset.agent = agent.agent;
    item.dataset.presence = presence;
    item.append(el("span", "name", agent.name), el("span", "number", agent.agent));
    item.append(el("span", "state", LABELS[presence]));
    return item;
  });
  if (items.length === 0) items.push(el("li", "empty", T.no_colleagues));
  list.replaceChildren(...items);
  document.getElementById("team-summary").textContent = agents.length
    ? `${counts.available} ${T.available} · ${counts.on_call} ${T.on_call} · ` +
      `${counts.unavailable} ${T.unavailable}`
    : "";
}

function formatWait(seconds) {
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return `${m}:${s}`;
}

function formatLevel(level) {
  return level === null || level === undefined ? "–" : `${Math.round(level * 100)} %`;
}

function stat(dl, key, label, value) {
  const dd = el("dd", "", String(value));
  dd.dataset.stat = key;
  dl.append(el("dt", "", label), dd);
}

function renderHotlines(hotlines) {
  const box = document.getElementById("hotlines");
  const cards = hotlines.map((h) => {
    const card = el("article", "hotline");
    card.dataset.hotline = h.number;
    card.dataset.waiting = String(h.waiting);
    const title = el("h3", "", h.name);
    title.append(el("span", "number", h.number));
    const dl = el("dl");
    stat(dl, "logged_in", T.logged_in, h.logged_in);
    stat(dl, "available", T.available_count, h.available);
    stat(dl, "waiting", T.waiting, h.waiting);
    stat(dl, "longest_wait", T.longest_wait, formatWait(h.longest_wait_s));
    // Hotlines that offer callbacks: how many are still to be made.
    if (h.callbacks_waiting !== null && h.callbacks_waiting !== undefined) {
      stat(dl, "callbacks_waiting", T.callbacks_waiting, h.callbacks_waiting);
    }
    stat(dl, "service_level", T.service_level.replace("{s}", h.service_level_s),
      formatLevel(h.service_level));
    // Duty roster hotlines: only whether someone is on duty, never who.
    if (h.on_duty !== null && h.on_duty !== undefined) {
      stat(dl, "on_duty", T.on_duty, h.on_duty ? T.yes : T.no);
    }
    card.append(title, dl);
    return card;
  });
  if (cards.length === 0) cards.push(el("p", "empty", T.no_hotlines));
  box.replaceChildren(...cards);
}

// --- charts: inline SVG from /api/charts (the figures of `hotline report --by hour`) ----
// The SVG namespace, taken from the page's own <svg> (the page names no URL at all).
const SVG = document.getElementById("chart-calls").namespaceURI;
const CHART = { w: 640, h: 220, left: 34, right: 8, top: 10, bottom: 24 };
const OUTCOMES = ["answered", "abandoned", "voicemail"];
const CHARTS_MS = 10000; // at most this often, and after hotline updates
let chartsAt = 0;
let chartsTimer = null;

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(box, maxValue, suffix) {
  const { w, h, left, right, top, bottom } = CHART;
  const inner = h - top - bottom;
  const nodes = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (maxValue * i) / 4;
    const y = top + inner - (inner * i) / 4;
    nodes.push(svg("line", { class: "grid", x1: left, x2: w - right, y1: y, y2: y }));
    nodes.push(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" },
      `${Math.round(value * 10) / 10}${suffix}`));
  }
  const slot = (w - left - right) / 24;
  for (let hour = 0; hour < 24; hour += 3) {
    nodes.push(svg("text", { x: left + slot * hour + slot / 2, y: h - 8, "text-anchor": "middle" },
      String(hour).padStart(2, "0")));
  }
  nodes.push(svg("line", { class: "axis", x1: left, x2: w - right, y1: top + inner, y2: top + inner }));
  box.replaceChildren(...nodes);
  return { slot, inner, y0: top + inner };
}

function drawCalls(hours) {
  const box = document.getElementById("chart-calls");
  const totals = hours.map((p) => OUTCOMES.reduce((sum, key) => sum + p[key], 0));
  const maxValue = Math.max(4, ...totals);
  const { slot, inner, y0 } = frame(box, maxValue, "");
  for (const p of hours) {
    const group = svg("g", { class: "hour" });
    group.dataset.hour = p.hour;
    let y = y0;
    for (const key of OUTCOMES) {
      group.dataset[key] = p[key];
      if (!p[key]) continue;
      const height = (inner * p[key]) / maxValue;
      y -= height;
      group.append(svg("rect", {
        class: key, x: CHART.left + slot * p.hour + 1, y, width: slot - 2, height,
      }));
    }
    group.append(svg("title", {}, `${String(p.hour).padStart(2, "0")}:00 ` +
      OUTCOMES.map((key) => `${T[key]} ${p[key]}`).join(", ")));
    box.append(group);
  }
}

function drawLevel(hours) {
  const box = document.getElementById("chart-level");
  const { slot, inner, y0 } = frame(box, 100, "");
  const points = [];
  for (const p of hours) {
    if (p.service_level_pct === null) continue;
    const x = CHART.left + slot * p.hour + slot / 2;
    const y = y0 - (inner * p.service_level_pct) / 100;
    points.push(`${x},${y}`);
    const dot = svg("circle", { class: "level-point", cx: x, cy: y, r: 3 });
    dot.dataset.hour = p.hour;
    dot.dataset.level = p.service_level_pct;
    dot.append(svg("title", {}, `${String(p.hour).padStart(2, "0")}:00 ${p.service_level_pct} %`));
    box.append(dot);
  }
  if (points.length) box.prepend(svg("polyline", { class: "level-line", points: points.join(" ") }));
}

async function loadCharts() {
  chartsAt = Date.now();
  try {
    const response = await fetch("api/charts", { cache: "no-store" });
    if (!response.ok) return;
    const data = await response.json();
    drawCalls(data.hours);
    drawLevel(data.hours);
    document.getElementById("charts-day").textContent = data.day;
    document.getElementById("chart-calls").dataset.day = data.day;
  } catch (err) {
    // the next hotline update tries again
  }
}

function chartsSoon() {
  if (chartsTimer !== null) return;
  const wait = Math.max(0, chartsAt + CHARTS_MS - Date.now());
  chartsTimer = setTimeout(() => {
    chartsTimer = null;
    loadCharts();
  }, wait);
}

function connect() {
  source = new EventSource("api/presence/stream");
  source.addEventListener("open", () => setConnection("live", T.live));
  source.addEventListener("presence", (e) => {
    renderAgents(JSON.parse(e.data).agents);
    setConnection("live", T.live);
  });
  source.addEventListener("hotlines", (e) => {
    renderHotlines(JSON.parse(e.data).hotlines);
    chartsSoon();
  });
  source.addEventListener("error", () => {
    setConnection("reconnecting", T.reconnecting);
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, REOPEN_MS);
    }
  });
}

function tick() {
  // 24-hour clock in every language (hourCycle h23: 00-23, never AM/PM).
  document.getElementById("clock").textContent = new Date().toLocaleTimeString(LANG, {
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
}

tick();
setInterval(tick, 1000);
connect();
