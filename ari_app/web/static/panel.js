// Team panel: renders the server-sent `presence` and `hotlines` events. Built with
// textContent only (names are data, never markup). Reconnects by itself: EventSource retries
// after network errors, and a stream the browser gave up on is reopened here.
"use strict";

const LABELS = { available: "available", on_call: "on a call", unavailable: "not available" };
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
  if (items.length === 0) items.push(el("li", "empty", "No colleagues yet."));
  list.replaceChildren(...items);
  document.getElementById("team-summary").textContent = agents.length
    ? `${counts.available} available · ${counts.on_call} on a call · ` +
      `${counts.unavailable} not available`
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
    stat(dl, "logged_in", "Agents logged in", h.logged_in);
    stat(dl, "available", "Available", h.available);
    stat(dl, "waiting", "Callers waiting", h.waiting);
    stat(dl, "longest_wait", "Longest wait", formatWait(h.longest_wait_s));
    stat(dl, "service_level", `Service level today (${h.service_level_s} s)`,
      formatLevel(h.service_level));
    // Duty roster hotlines: only whether someone is on duty, never who.
    if (h.on_duty !== null && h.on_duty !== undefined) {
      stat(dl, "on_duty", "On duty", h.on_duty ? "yes" : "no");
    }
    card.append(title, dl);
    return card;
  });
  if (cards.length === 0) cards.push(el("p", "empty", "No hotlines yet."));
  box.replaceChildren(...cards);
}

function connect() {
  source = new EventSource("api/presence/stream");
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("presence", (e) => {
    renderAgents(JSON.parse(e.data).agents);
    setConnection("live", "live");
  });
  source.addEventListener("hotlines", (e) => renderHotlines(JSON.parse(e.data).hotlines));
  source.addEventListener("error", () => {
    setConnection("reconnecting", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, REOPEN_MS);
    }
  });
}

function tick() {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString([], {
    hour: "2-digit", minute: "2-digit",
  });
}

tick();
setInterval(tick, 1000);
connect();
