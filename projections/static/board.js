"use strict";
// Live top-N view: a snapshot, then versioned deltas applied in order (see docs/gateway.md).
const board = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
const N = Math.min(1000, Math.max(1, parseInt(params.get("n") || "10", 10)));
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
const url = wsBase + "/v1/leaderboards/" + encodeURIComponent(board) + "/subscribe";
const $ = (id) => document.getElementById(id);
document.title = board + " · leaderboard";
$("title").textContent = board;

let rows = [];          // [{participant_id, score, profile}], index = rank - 1
let version = null;
let tracked = null;
const moves = new Map(); // participant -> {kind, by, until}

function render(changed) {
  const body = $("rows");
  const now = Date.now();
  body.replaceChildren();
  rows.forEach((r, i) => {
    const tr = document.createElement("tr");
    tr.dataset.pid = r.participant_id;
    tr.dataset.rank = String(i + 1);
    if (changed && changed.has(r.participant_id)) tr.classList.add("flash");
    if (tracked && r.participant_id === tracked) tr.classList.add("tracked");
    const m = moves.get(r.participant_id);
    let move = "";
    if (m && m.until > now) {
      move = m.kind === "new" ? '<span class="new">new</span>'
        : `<span class="${m.kind}">${m.kind === "up" ? "▲" : "▼"}${m.by}</span>`;
    }
    tr.innerHTML = `<td class="rank">${i + 1}</td><td class="move">${move}</td>` +
      `<td class="pid"></td><td class="score"></td>`;
    const cell = tr.querySelector(".pid");
    const p = r.profile || {};
    if (p.display_name) {
      // the profile's name, the id beside it (names are not unique, ids are)
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.display_name;
      const id = document.createElement("span");
      id.className = "id";
      id.textContent = r.participant_id;
      cell.append(name, " ", id);
    } else {
      cell.textContent = r.participant_id;
    }
    if (p.country) {
      const c = document.createElement("span");
      c.className = "country";
      c.textContent = " " + p.country;
      cell.append(c);
    }
    cell.title = r.participant_id;
    tr.querySelector(".score").textContent = r.score.toLocaleString();
    body.append(tr);
  });
  $("version").textContent = version === null ? "–" : String(version);
}

function applyDelta(msg) {
  const before = new Map(rows.map((r, i) => [r.participant_id, i + 1]));
  const changed = new Set();
  for (const c of msg.changes) {
    const at = rows.findIndex((r) => r.participant_id === c.participant_id);
    if (at >= 0) rows.splice(at, 1);
    // rows 1..rows.length are exact; a row further down waits for the delta's fill
    if (c.new_rank <= N && c.new_rank <= rows.length + 1) {
      rows.splice(c.new_rank - 1, 0, { participant_id: c.participant_id, score: c.new_score, profile: c.profile });
    }
    rows = rows.slice(0, N);
    changed.add(c.participant_id);
    if (c.old_rank === null && c.participant_id !== undefined) {
      $("count").textContent = String(parseInt($("count").textContent, 10) + 1);
    }
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
  render(changed);
}

// Close codes after which reconnecting cannot help (docs/gateway.md): say why and stop.
const FINAL = new Map([
  [4404, "no such leaderboard"],
  [4401, "not allowed: the token was refused"],
  [4403, "not allowed"],
  [1008, "the gateway refused the subscription"],
]);
let attempts = 0;     // failed connections in a row: the reconnect delay doubles with each

function connect() {
  const ws = new WebSocket(url);
  let stopped = null;
  ws.onopen = () => {
    const sub = { type: "subscribe", mode: "top", n: N };
    if (version !== null) sub.since_version = version;
    ws.send(JSON.stringify(sub));
    $("dot").classList.add("live");
    $("status").textContent = "live";
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot" || msg.type === "delta") attempts = 0;
    if (msg.type === "snapshot") {
      rows = msg.entries.map((e) => ({ participant_id: e.participant_id, score: e.score, profile: e.profile }));
      version = msg.version;
      $("period").textContent = msg.period;
      $("count").textContent = String(msg.count);
      render(null);
    } else if (msg.type === "delta") {
      if (msg.period) $("period").textContent = msg.period;
      applyDelta(msg);
    } else if (msg.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (msg.type === "error") {
      stopped = msg.error.message;
      $("status").textContent = stopped;
    }
  };
  ws.onclose = (ev) => {
    $("dot").classList.remove("live");
    if (FINAL.has(ev.code)) {
      $("status").textContent = stopped || FINAL.get(ev.code);
      $("status").dataset.final = String(ev.code);
      return;
    }
    // 1 s, 2 s, 4 s … up to 30 s, with jitter so that many pages do not return at once
    const delay = Math.min(30000, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
    attempts += 1;
    $("status").textContent = `reconnecting in ${Math.round(delay / 1000)} s…`;
    setTimeout(connect, delay);
  };
}

let trackWs = null;
$("track-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  tracked = $("track-pid").value.trim();
  if (trackWs) trackWs.close();
  const out = $("track-out");
  const show = (rank, score) => {
    out.textContent = rank ? `${tracked}: rank ${rank}, score ${score}` : `${tracked} is not on the board yet`;
  };
  let rank = null, score = null;
  trackWs = new WebSocket(url);
  trackWs.onopen = () => trackWs.send(JSON.stringify({ type: "subscribe", mode: "track", participant_id: tracked }));
  trackWs.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "snapshot") {
      const me = msg.entries[0];
      rank = me ? me.rank : null; score = me ? me.score : null;
      show(rank, score);
    } else if (msg.type === "delta") {
      for (const c of msg.changes) { rank = c.new_rank; score = c.new_score; }
      show(rank, score);
      out.classList.remove("flash"); void out.offsetWidth; out.classList.add("flash");
    } else if (msg.type === "ping") {
      trackWs.send(JSON.stringify({ type: "pong" }));
    }
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
    const res = await fetch("/v1/leaderboards/" + encodeURIComponent(board) + "/scores?wait=true",
      { method: "POST", headers, body: JSON.stringify(body) });
    const data = await res.json();
    out.textContent = res.ok
      ? `${data.participant_id}: rank ${data.rank} (was ${data.previous_rank ?? "–"}), score ${data.score}`
      : `${res.status}: ${data.error.message}`;
    out.dataset.status = String(res.status);
  } catch (e) {
    out.textContent = "cannot reach the gateway";
  }
});

connect();
