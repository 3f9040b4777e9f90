// Load client of the `ws.viewers` benchmark (benchmarks/scenarios/ws_viewers.py): N top-n
// viewers of one board over the gateway's WebSocket, with the `ws` package from npm.
//
// usage: node ws_viewers.js URL VIEWERS N PROBE OUT.json
//
// Opens VIEWERS connections (at most 100 opening at once), subscribes each to the top N,
// prints "ready <count>" once every viewer has its snapshot (or "failed <why>"), then records
// the probes from the score a line "from MS" names until a line "stop" arrives on stdin. The probe participant's score is its send time in
// milliseconds, so a viewer's push latency is its receive time minus the score. OUT.json
// gets, per viewer, the [probe score, receive time in ms] pairs it saw, the closes the client
// did not ask for, the errors and the messages all viewers received since "from".
"use strict";

const fs = require("fs");
const readline = require("readline");
const WebSocket = require("ws");

const [url, viewersArg, nArg, probe, out] = process.argv.slice(2);
const viewers = Number(viewersArg);
const n = Number(nArg);
if (!url || !(viewers > 0) || !(n > 0) || !probe || !out) {
  process.stderr.write("usage: node ws_viewers.js URL VIEWERS N PROBE OUT.json\n");
  process.exit(2);
}

const seen = Array.from({ length: viewers }, () => []);
const closes = [];
const errors = [];
const sockets = [];
let ready = 0;
let stopping = false;
let opening = 0;
let next = 0;
let announced = false;

let from = Infinity; // probes below this score are not recorded (set by "from MS")
let fromAt = Infinity; // receive time (ms) of "from": messages counted from then on
let messages = 0;
const last = new Array(viewers).fill(0);

function onProbe(i, score, now) {
  if (score <= last[i]) return;
  last[i] = score;
  if (score >= from) seen[i].push([score, now]);
}

function open(i) {
  opening += 1;
  const ws = new WebSocket(url);
  sockets[i] = ws;
  let first = true;
  ws.on("open", () => {
    ws.send(JSON.stringify({ type: "subscribe", mode: "top", n }));
  });
  ws.on("message", (data) => {
    const now = Date.now();
    if (now >= fromAt) messages += 1;
    const msg = JSON.parse(data.toString());
    if (first) {
      first = false;
      opening -= 1;
      if (msg.type === "snapshot") ready += 1;
      else errors.push(`viewer ${i}: first message ${msg.type}`);
      pump();
    }
    if (msg.type === "ping") {
      ws.send('{"type":"pong"}');
    } else if (msg.type === "delta") {
      for (const c of msg.changes) if (c.participant_id === probe) onProbe(i, c.new_score, now);
    } else if (msg.type === "snapshot") {
      for (const e of msg.entries) if (e.participant_id === probe) onProbe(i, e.score, now);
    }
  });
  ws.on("close", (code, reason) => {
    if (!stopping) closes.push({ viewer: i, code, reason: reason.toString() });
    if (first) {
      first = false;
      opening -= 1;
      pump();
    }
  });
  ws.on("error", (err) => {
    errors.push(`viewer ${i}: ${err.message}`);
  });
}

function pump() {
  while (opening < 100 && next < viewers) open(next++);
  if (!announced && next >= viewers && opening === 0) {
    announced = true;
    if (ready === viewers) process.stdout.write(`ready ${ready}\n`);
    else process.stdout.write(`failed ${ready} of ${viewers} viewers got a snapshot\n`);
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const words = line.trim().split(" ");
  if (words[0] === "from") {
    from = Number(words[1]);
    fromAt = Date.now();
  }
  if (words[0] !== "stop") return;
  stopping = true;
  fs.writeFileSync(out, JSON.stringify({ seen, closes, errors, messages }));
  for (const ws of sockets) if (ws) ws.terminate();
  process.stdout.write("done\n");
  process.exit(0);
});

pump();
