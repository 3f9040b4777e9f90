"use strict";
// One board's page (docs/gateway.md, "The live page"). Three views of the same table:
//  - live (default): the top N over WebSocket, a snapshot then versioned deltas; when the
//    WebSocket cannot be used, HTTP polling of the rankings with If-None-Match instead;
//  - a page beyond the top N (?offset=): the rankings polled over HTTP with If-None-Match;
//  - a closed period (?period=): its final standings from the history endpoint.
const board = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
const N = Math.min(1000, Math.max(1, parseInt(params.get("n") || "10", 10) || 10));
const OFFSET = Math.min(100000000, Math.max(0, parseInt(params.get("offset") || "0", 10) || 0));
const PERIOD = params.get("period"); // a closed period: its final standings
const api = "/v1/leaderboards/" + encodeURIComponent(board);
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
const url = wsBase + api + "/subscribe";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const digits = new Intl.NumberFormat(); // digit grouping in the reader's locale
document.title = board + " · leaderboard";
$("title").textContent = board;

let rows = [];          // [{participant_id, score, profile}], index = rank - OFFSET - 1
let version = null;
let tracked = null;
let stopped = false;    // a final answer (unknown board …): nothing more to ask
const moves = new Map(); // participant -> {kind, by, until}

function pageUrl(offset, period) {
  const q = new URLSearchParams();
  if (N !== 10) q.set("n", String(N));
  if (offset > 0) q.set("offset", String(offset));
  if (period) q.set("period", period);
  const s = q.toString();
  return location.pathname + (s ? "?" + s : "");
}

function setStatus(text, live) {
  $("status").textContent = text;
  $("dot").classList.toggle("live", !!live);
}

function stop(text, code) {
  stopped = true;
  stopPolling();
  setStatus(text, false);
  $("status").dataset.final = String(code);
}

function participantCell(cell, r) {
  const p = r.profile || {};
  const id = document.createElement("span");
  id.className = "id"; // long ids are cut with an ellipsis (style.css); the title holds all
  id.textContent = r.participant_id;
  if (p.display_name) {
    // the profile's name, the id beside it (names are not unique, ids are)
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.display_name;
    cell.append(name, " ", id);
  } else {
    id.classList.add("bare");
    cell.append(id);
  }
  if (p.country) {
    const c = document.createElement("span");
    c.className = "country";
    c.textContent = " " + p.country;
    cell.append(c);
  }
  cell.title = r.participant_id;
}

function render(changed) {
  const body = $("rows");
  const now = Date.now();
  body.replaceChildren();
  rows.forEach((r, i) => {
    const rank = OFFSET + i + 1;
    const tr = document.createElement("tr");
    tr.dataset.pid = r.participant_id;
    tr.dataset.rank = String(rank);
    if (changed && changed.has(r.participant_id)) tr.classList.add("flash");
    if (tracked && r.participant_id === tracked) tr.classList.add("tracked");
    const m = moves.get(r.participant_id);
    let move = "";
    if (m && m.until > now) {
      move = m.kind === "new" ? '<span class="new">new</span>'
        : `<span class="${m.kind}">${m.kind === "up" ? "▲" : "▼"}${m.by}</span>`;
    }
    tr.innerHTML = `<td class="rank"></td><td class="move">${move}</td>` +
      `<td class="pid"></td><td class="score"></td>`;
    tr.querySelector(".rank").textContent = digits.format(rank);
    participantCell(tr.querySelector(".pid"), r);
    tr.querySelector(".score").textContent = digits.format(r.score);
    body.append(tr);
  });
  $("version").textContent = version === null ? "–" : String(version);
}

function setCount(count) {
  $("count").textContent = digits.format(count);
  $("count").dataset.count = String(count);
  // paging beyond the top N: the previous and next N rows
  const prev = $("prev"), next = $("next");
  prev.hidden = OFFSET === 0;
  prev.href = pageUrl(Math.max(0, OFFSET - N), PERIOD);
  prev.textContent = `← ranks ${digits.format(Math.max(0, OFFSET - N) + 1)}–${digits.format(OFFSET)}`;
  next.hidden = OFFSET + N >= count;
  next.href = pageUrl(OFFSET + N, PERIOD);
  next.textContent = `ranks ${digits.format(OFFSET + N + 1)}–${digits.format(Math.min(count, OFFSET + 2 * N))} →`;
}

function fromEntries(entries) {
  return entries.map((e) => ({ participant_id: e.participant_id, score: e.score, profile: e.profile }));
}

function applyDelta(msg) {
  const before = new Map(rows.map((r, i) => [r.participant_id, i + 1]));
  const changed = new Set();
  let count = parseInt($("count").dataset.count || "0", 10);
  for (const c of msg.changes) {
    const at = rows.findIndex((r) => r.participant_id === c.participant_id);
    if (at >= 0) rows.splice(at, 1);
    // rows 1..rows.length are exact; a row further down waits for the delta's fill
    if (c.new_rank <= N && c.new_rank <= rows.length + 1) {
      rows.splice(c.new_rank - 1, 0, { participant_id: c.participant_id, score: c.new_score, profile: c.profile });
    }
    rows = rows.slice(0, N);
    changed.add(c.participant_id);
    if (c.old_rank === null && c.participant_id !== undefined) count += 1;
  }
  // rows that entered the top N from below (others left it), read at the delta's version
  for (const e of msg.fill || []) {
    rows.push({ participant_id: e.participant_id, score: e.score, profile: e.profile });
  }
  const until = Date.now() + 4000;
  rows.forEach((r, i) => {
    const was = before.get(r.participant_id);
    if (was === undefined) moves.set(r.participant_id, { kind: "new", by: 0, until });
    else if (was !== i + 1) moves.set(r.participant_id, { kind: was > i + 1 ? "up" : "down", by: Math.abs(was - i - 1), until });
  });
  version = msg.version;
  setCount(count);
  render(changed);
}

// ---------------------------------------------------------------- HTTP polling (ETag)
// Pages beyond the top N, and the top N itself when the WebSocket cannot be used: the
// rankings are read every 2 s with If-None-Match, so an unchanged board costs one 304.
let pollTimer = null;
let etag = null;
let polling = false;

async function poll() {
  pollTimer = null;
  if (!polling || stopped) return;
  const headers = etag ? { "If-None-Match": etag } : {};
  try {
    const res = await fetch(`${api}/rankings?limit=${N}&offset=${OFFSET}`, { headers, cache: "no-store" });
    if (!polling || stopped) return; // the WebSocket took over meanwhile: its rows are newer
    if (res.status === 404) {
      const body = await res.json();
      stop(body.error ? body.error.message : `no such leaderboard: ${board}`, 404);
      return;
    }
    if (res.status === 200) {
      const body = await res.json();
      etag = res.headers.get("ETag");
      rows = fromEntries(body.entries);
      version = body.version;
      $("period").textContent = body.period;
      setCount(body.count);
      render(null);
    } else if (res.status !== 304) {
      throw new Error(String(res.status));
    }
    if (polling) setStatus(pollStatus(), true);
  } catch (e) {
    if (polling) setStatus("cannot reach the gateway: retrying", false);
  }
  if (polling && !stopped) pollTimer = setTimeout(poll, POLL_MS);
}

function pollStatus() {
  if (OFFSET > 0) return `ranks ${digits.format(OFFSET + 1)}–${digits.format(OFFSET + N)}, refreshed every 2 s`;
  return "polling every 2 s (WebSocket unavailable)";
}

function startPolling() {
  if (polling || stopped) return;
  polling = true;
  $("status").dataset.mode = "polling";
  poll();
}

function stopPolling() {
  polling = false;
  delete $("status").dataset.mode;
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
}

// ---------------------------------------------------------------- WebSocket
// Close codes after which reconnecting cannot help (docs/gateway.md): say why and stop.
const FINAL = new Map([
  [4404, "no such leaderboard"],
  [4401, "not allowed: the token was refused"],
  [4403, "not allowed"],
  [1008, "the gateway refused the subscription"],
]);
const FALLBACK_AFTER = 2; // failed connections in a row before polling takes over
let attempts = 0;     // failed connections in a row: the reconnect delay doubles with each

function retry() {
  // 1 s, 2 s, 4 s … up to 30 s, with jitter so that many pages do not return at once
  const delay = Math.min(30000, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
  attempts += 1;
  if (attempts >= FALLBACK_AFTER) startPolling();
  if (!polling) setStatus(`reconnecting in ${Math.round(delay / 1000)} s…`, false);
  setTimeout(connect, delay);
}

function connect() {
  if (stopped) return;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    retry();
    return;
  }
  let why = null;
  ws.onopen = () => {
    const sub = { type: "subscribe", mode: "top", n: N };
    if (version !== null) sub.since_version = version;
    ws.send(JSON.stringify(sub));
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot" || msg.type === "delta") {
      attempts = 0;
      stopPolling();
      setStatus("live", true);
    }
    if (msg.type === "snapshot") {
      rows = fromEntries(msg.entries);
      version = msg.version;
      $("period").textContent = msg.period;
      setCount(msg.count);
      render(null);
    } else if (msg.type === "delta") {
      if (msg.period) $("period").textContent = msg.period;
      applyDelta(msg);
    } else if (msg.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (msg.type === "error") {
      why = msg.error.message;
      $("status").textContent = why;
    }
  };
  ws.onclose = (ev) => {
    if (stopped) return;
    if (FINAL.has(ev.code)) {
      stop(why || FINAL.get(ev.code), ev.code);
      return;
    }
    retry();
  };
}

// ---------------------------------------------------------------- a closed period
async function showPeriod() {
  $("track-form").closest(".panels").hidden = true;
  setStatus(`final standings of period ${PERIOD}`, false);
  const q = `period=${encodeURIComponent(PERIOD)}&limit=${N}&offset=${OFFSET}`;
  try {
    const res = await fetch(`${api}/history?${q}`);
    const body = await res.json();
    if (!res.ok) {
      stop(body.error.message, res.status);
      return;
    }
    rows = fromEntries(body.entries);
    version = body.version;
    $("period").textContent = body.period;
    setCount(body.participant_count);
    render(null);
    $("status").textContent = `final standings of period ${body.period}, closed ${body.closed_at.slice(0, 19).replace("T", " ")} UTC`;
  } catch (e) {
    setStatus("cannot reach the gateway", false);
  }
}

// a link to past periods: the latest closed one (it answers 404 while none is closed)
async function historyLink() {
  const span = $("history-link");
  if (PERIOD) {
    span.replaceChildren();
    const a = document.createElement("a");
    a.href = location.pathname + (N !== 10 ? `?n=${N}` : "");
    a.textContent = "live standings";
    span.append(a);
    return;
  }
  try {
    const res = await fetch(`${api}/history?limit=1`);
    if (res.status === 404) {
      const body = await res.json();
      span.textContent = /not closed/.test(body.error.message) ? "no closed period yet" : "";
      return;
    }
    if (!res.ok) {
      span.hidden = true; // no history on this gateway
      return;
    }
    const body = await res.json();
    const a = document.createElement("a");
    a.id = "past";
    a.href = pageUrl(0, body.period);
    a.textContent = `past periods: ${body.period}`;
    span.replaceChildren(a);
  } catch (e) {
    span.hidden = true;
  }
}

// ---------------------------------------------------------------- tracking, with a chart
// The chart: the participant's final rank in this board's closed periods (placements, from
// the history kept in PostgreSQL), then its rank as it moves while the page is open.
let trackWs = null;
let points = []; // [{rank, label, past, href}]

function drawChart() {
  const svg = $("chart");
  svg.replaceChildren();
  svg.toggleAttribute("hidden", points.length === 0); // (an SVG element has no .hidden)
  svg.dataset.ranks = points.map((p) => p.rank).join(",");
  if (!points.length) return;
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  };
  const best = Math.min(...points.map((p) => p.rank));
  const worst = Math.max(...points.map((p) => p.rank));
  const x = (i) => 40 + (points.length === 1 ? 125 : (i * 250) / (points.length - 1));
  const y = (r) => 10 + (worst === best ? 35 : ((r - best) * 70) / (worst - best)); // rank 1 on top
  const top = el("text", { x: 2, y: 13 });
  top.textContent = "#" + digits.format(best);
  const bottom = el("text", { x: 2, y: 83 });
  bottom.textContent = "#" + digits.format(worst);
  svg.append(top, bottom);
  if (points.length > 1) {
    svg.append(el("polyline", { points: points.map((p, i) => `${x(i)},${y(p.rank)}`).join(" ") }));
  }
  points.forEach((p, i) => {
    const c = el("circle", { cx: x(i), cy: y(p.rank), r: 3, class: p.past ? "past" : "live" });
    const t = el("title", {});
    t.textContent = `${p.label}: rank ${digits.format(p.rank)}`;
    c.append(t);
    if (p.href) {
      const a = el("a", { href: p.href });
      a.append(c);
      svg.append(a);
    } else {
      svg.append(c);
    }
  });
}

function addPoint(rank) {
  if (rank === null || rank === undefined) return;
  const last = points[points.length - 1];
  if (last && !last.past && last.rank === rank) return;
  points.push({ rank, label: new Date().toLocaleTimeString(), past: false });
  const live = points.filter((p) => !p.past);
  if (live.length > 50) points.splice(points.indexOf(live[0]), 1);
  drawChart();
}

async function pastPlacements(pid) {
  try {
    const res = await fetch(`/v1/participants/${encodeURIComponent(pid)}/placements?limit=50`);
    if (!res.ok) return [];
    const body = await res.json();
    return body.placements
      .filter((p) => p.leaderboard_id === board)
      .reverse() // oldest first
      .map((p) => ({ rank: p.rank, label: `period ${p.period} (final)`, past: true, href: pageUrl(0, p.period) }));
  } catch (e) {
    return [];
  }
}

$("track-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  tracked = $("track-pid").value.trim();
  if (trackWs) trackWs.close();
  const me = tracked;
  const out = $("track-out");
  const show = (rank, score) => {
    out.textContent = rank
      ? `${me}: rank ${digits.format(rank)}, score ${digits.format(score)}`
      : `${me} is not on the board yet`;
  };
  points = await pastPlacements(me);
  if (tracked !== me) return; // another participant was asked for meanwhile
  drawChart();
  let rank = null, score = null, heard = false;
  const ws = trackWs = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", mode: "track", participant_id: me }));
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "snapshot") {
      heard = true;
      const row = msg.entries[0];
      rank = row ? row.rank : null; score = row ? row.score : null;
      show(rank, score);
      addPoint(rank);
    } else if (msg.type === "delta") {
      for (const c of msg.changes) { rank = c.new_rank; score = c.new_score; }
      show(rank, score);
      addPoint(rank);
      out.classList.remove("flash"); void out.offsetWidth; out.classList.add("flash");
    } else if (msg.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    }
  };
  ws.onclose = () => {
    if (trackWs === ws && !heard) out.textContent = `${me}: live tracking unavailable`;
  };
  render(null);
});

$("score-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("score-out");
  const headers = { "Content-Type": "application/json" };
  const key = $("score-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const body = { participant_id: $("score-pid").value.trim(), score: parseInt($("score-value").value, 10) };
  out.textContent = "sending…";
  try {
    const res = await fetch(api + "/scores?wait=true",
      { method: "POST", headers, body: JSON.stringify(body) });
    const data = await res.json();
    out.textContent = res.ok
      ? `${data.participant_id}: rank ${data.rank} (was ${data.previous_rank ?? "–"}), score ${digits.format(data.score)}`
      : `${res.status}: ${data.error.message}`;
    out.dataset.status = String(res.status);
  } catch (e) {
    out.textContent = "cannot reach the gateway";
  }
});

historyLink();
if (PERIOD) showPeriod();
else if (OFFSET > 0) startPolling();
else connect();
