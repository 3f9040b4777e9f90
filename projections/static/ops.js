// The operations page: polls /ops/data and draws each series as an SVG polyline (no library).
"use strict";

const COLORS = ["#2456c9", "#c0392b", "#198a2c", "#8e44ad", "#d68910", "#117a65"];
const SVG = "http://www.w3.org/2000/svg";
const W = 900, H = 160, PAD = 44;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString();
  return (Math.round(v * 10) / 10).toString();
}

// series: [{name, values: [number|null]}], all as long as times
function draw(id, times, series) {
  const box = document.getElementById(id);
  const svg = box.querySelector("svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const t0 = times[0] || 0, t1 = times[times.length - 1] || 1, span = Math.max(t1 - t0, 1);
  for (let i = 0; i <= 4; i++) {
    const y = PAD / 4 + (H - PAD) * i / 4;
    el("line", {x1: PAD, x2: W, y1: y, y2: y, class: "grid"}, svg);
    el("text", {x: 2, y: y + 4, class: "axis"}, svg).textContent = fmt(max * (1 - i / 4));
  }
  const legend = box.querySelector(".legend");
  legend.replaceChildren();
  const now = [];
  series.forEach((s, k) => {
    const pts = [];
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = PAD + (W - PAD) * (times[i] - t0) / span;
      const y = PAD / 4 + (H - PAD) * (1 - v / max);
      pts.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    });
    const color = COLORS[k % COLORS.length];
    el("polyline", {points: pts.join(" "), stroke: color, "data-series": s.name}, svg);
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${color}"></i>`;
    item.append(s.name);
    legend.appendChild(item);
    const last = s.values[s.values.length - 1];
    now.push(`${s.name} ${fmt(last)}`);
  });
  box.querySelector(".now").textContent = now.join(" · ");
}

function keys(points, field) {
  const names = new Set();
  for (const p of points) for (const k of Object.keys(p[field] || {})) names.add(k);
  return [...names].sort();
}

function render(data) {
  const points = data.points;
  const times = points.map(p => p.t);
  const roles = keys(points, "records_per_s");
  draw("throughput", times, [
    {name: "entries applied/s", values: points.map(p => p.entries_per_s)},
    ...roles.map(r => ({name: `${r} records/s`, values: points.map(p => (p.records_per_s || {})[r] ?? null)})),
    {name: "HTTP requests/s", values: points.map(p => p.http_per_s)},
  ]);
  const lagRoles = keys(points, "lag");
  draw("lag", times, lagRoles.length
    ? lagRoles.map(r => ({name: r, values: points.map(p => (p.lag || {})[r] ?? null)}))
    : [{name: "no worker reports lag yet", values: points.map(() => null)}]);
  draw("latency", times, [
    {name: "projector batch", values: points.map(p => p.batch_p95_ms)},
    {name: "gateway HTTP", values: points.map(p => p.http_p95_ms)},
  ]);
  const rows = document.getElementById("targets");
  rows.replaceChildren();
  for (const t of data.targets) {
    const tr = document.createElement("tr");
    for (const text of [t.role, t.url]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    const state = document.createElement("td");
    state.textContent = t.up ? "up" : "down";
    state.className = t.up ? "up" : "down";
    tr.appendChild(state);
    rows.appendChild(tr);
  }
  document.body.dataset.points = String(points.length);
}

async function poll() {
  try {
    const r = await fetch("/ops/data", {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    document.getElementById("status").textContent = "live";
    document.getElementById("dot").className = "dot live";
  } catch (err) {
    document.getElementById("status").textContent = `no data: ${err.message}`;
    document.getElementById("dot").className = "dot";
  }
  setTimeout(poll, 2000);
}

poll();
