// rf's live page: one WebSocket to the server (rf.serve.protocol), frames drawn on a canvas as they arrive.
// No build step, no libraries. window.rfStats holds what the page measures (the Chromium test reads it).
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);

const stats = (window.rfStats = {
  state: "connecting", // connecting | idle | queued | streaming | ended | closed
  position: null, // queue position while waiting (1 = next)
  framesDrawn: 0,
  // [{chunk, ms, ready, backlog, stamp, started, seconds}]: server decode stamp -> the chunk's first frame drawn
  // (ms) and decoded here (ready); backlog: frames of earlier chunks still waiting when it was ready (0: drawn at
  // once); stamp / started: epoch ms when the server finished decoding / began computing it; seconds: its place
  // in the video
  latencies: [],
  promptIndex: null, // prompt index of the frame drawn last
  switches: [], // [{prompt_index, chunk, at}] as the server applied them
  switchSent: [], // Date.now() of each switch typed (Enter or the button)
  firstDrawn: {}, // prompt index -> Date.now() of its first frame drawn: the switch latency is the difference
  lastDrawn: null, // Date.now() of the last frame drawn
  setupDrawMs: null, // the blank first draw when the frame size is known (onHello), before any chunk
  errors: [],
  ended: null, // the server's ended message
});

let hello = null;
let socket = null;
let pending = null; // the chunk header whose frames are arriving: {header, left}
let queue = []; // decoded frames waiting to be drawn: {bitmap, header, first, ready, backlog}
let timer = null; // the playout timer while the queue has a backlog
let startedAt = null;
let drawTimes = []; // for the FPS shown: times of the frames drawn in the last 2 s
const canvas = $("view");
const ctx = canvas.getContext("2d");

function setState(state, text) {
  stats.state = state;
  $("status").textContent = text || state;
  const streaming = state === "streaming";
  $("start").disabled = streaming || state === "queued" || state === "connecting" || state === "closed";
  $("stop").disabled = !(streaming || state === "queued");
  $("switch").disabled = !streaming;
  for (const id of ["policy", "alpha", "recache", "seed"]) $(id).disabled = streaming || state === "queued"; // per stream
}

function showError(message) {
  stats.errors.push(message);
  $("errors").textContent = message;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

// -- playout: at once when nothing waits, at the stream's fps when there is a backlog ----------------------
function draw(item) {
  ctx.drawImage(item.bitmap, 0, 0);
  item.bitmap.close();
  const now = Date.now();
  stats.framesDrawn += 1;
  stats.promptIndex = item.header.prompt_index;
  if (!(stats.promptIndex in stats.firstDrawn)) stats.firstDrawn[stats.promptIndex] = now;
  stats.lastDrawn = now;
  if (item.first) {
    const { index, stamp_ms, compute_s, seconds } = item.header;
    stats.latencies.push({ chunk: index, ms: now - stamp_ms, ready: item.ready - stamp_ms, backlog: item.backlog,
                           stamp: stamp_ms, started: stamp_ms - 1000 * compute_s, seconds });
  }
  drawTimes.push(now);
}

function pump() {
  timer = null;
  if (!queue.length) return; // idle: the next frame is drawn the moment it arrives
  draw(queue.shift());
  timer = setTimeout(pump, 1000 / hello.fps); // the frame just drawn keeps its slot; a backlog plays at fps
}

function enqueue(item) {
  item.ready = Date.now();
  item.backlog = queue.length;
  if (item.first && !queue.length && timer !== null) {
    clearTimeout(timer); // no backlog: a new chunk is drawn now, cutting the last frame's slot short
    timer = null;
  }
  queue.push(item);
  if (timer === null) pump();
}

// -- the socket ------------------------------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}${withToken("/ws")}`);
  socket.binaryType = "blob";
  let order = Promise.resolve(); // images decode asynchronously: keep them in arrival order
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") {
      const header = pending.header;
      const first = pending.left === header.frames;
      pending.left -= 1;
      const decoded = createImageBitmap(event.data);
      order = order.then(() => decoded).then((bitmap) => enqueue({ bitmap, header, first }));
      return;
    }
    const msg = JSON.parse(event.data);
    if (msg.type === "chunk") pending = { header: msg, left: msg.frames };
    else if (msg.type === "hello") onHello(msg);
    else if (msg.type === "queued") {
      stats.position = msg.position;
      setState("queued", `waiting: position ${msg.position} in the queue`);
    } else if (msg.type === "started") onStarted(msg);
    else if (msg.type === "switched") {
      stats.switches.push(msg);
      $("switches").textContent = stats.switches.map((s) => `${s.at.toFixed(2)} s`).join(", ");
    } else if (msg.type === "ended") {
      stats.ended = msg;
      setState("ended", `ended (${msg.reason}) after ${msg.seconds.toFixed(1)} s`);
    } else if (msg.type === "refused") {
      showError(msg.message);
      setState("closed", "refused");
    } else if (msg.type === "error") showError(msg.message);
  };
  socket.onclose = () => { if (stats.state !== "closed") setState("closed", "disconnected: reload the page"); };
}

function onHello(msg) {
  hello = msg;
  canvas.width = msg.width;
  canvas.height = msg.height;
  const scale = Math.max(1, Math.floor(384 / Math.max(msg.width, msg.height)));
  canvas.style.width = `${msg.width * scale}px`;
  canvas.style.height = `${msg.height * scale}px`;
  // The canvas's first draw sets up its drawing path: a headless Chromium spent 40-630 ms in it on the H100 machine
  // (experiments/serve/README.md). Paid now, with a blank frame, not by the stream's first chunk.
  createImageBitmap(new ImageData(msg.width, msg.height)).then((blank) => {
    const start = performance.now();
    ctx.drawImage(blank, 0, 0);
    blank.close();
    stats.setupDrawMs = Math.round((performance.now() - start) * 100) / 100;
  });
  $("policy").replaceChildren(...msg.policies.map((p) => new Option(p, p, false, p === msg.defaults.policy)));
  $("alpha").value = msg.defaults.alpha;
  $("recache").checked = msg.defaults.recache;
  $("seed").value = msg.defaults.seed;
  if (!$("prompt").value) $("prompt").value = msg.defaults.prompt;
  $("prompt").maxLength = msg.max_prompt_chars;
  $("model").textContent = `${msg.model}, ${msg.width}x${msg.height} at ${msg.fps} fps`;
  setState("idle", "ready: press Start");
}

function onStarted(msg) {
  Object.assign(stats, { position: null, framesDrawn: 0, latencies: [], promptIndex: null, switches: [],
                         switchSent: [], firstDrawn: {}, lastDrawn: null, ended: null });
  queue = [];
  drawTimes = [];
  startedAt = Date.now();
  for (const kind of ["mp4", "yaml"]) {
    $(kind).href = withToken(msg[kind]);
    $(kind).classList.remove("disabled");
  }
  $("switches").textContent = "-";
  setState("streaming", "streaming");
}

// -- controls --------------------------------------------------------------------------------------------------
$("start").onclick = () => {
  $("errors").textContent = "";
  send({
    type: "start",
    prompt: $("prompt").value,
    policy: $("policy").value,
    alpha: Number($("alpha").value),
    recache: $("recache").checked,
    seed: Number($("seed").value),
  });
};
$("stop").onclick = () => send({ type: "stop" });
const switchPrompt = () => {
  $("errors").textContent = "";
  stats.switchSent.push(Date.now());
  send({ type: "switch", prompt: $("prompt").value });
};
$("switch").onclick = switchPrompt;
$("prompt").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  if (stats.state === "streaming") switchPrompt();
  else if (!$("start").disabled) $("start").click();
});

// -- the numbers, four times a second --------------------------------------------------------------------------
setInterval(() => {
  const now = Date.now();
  drawTimes = drawTimes.filter((t) => now - t < 2000);
  $("fps").textContent = stats.state === "streaming" ? (drawTimes.length / 2).toFixed(1) : "-";
  const last = stats.latencies.slice(-8).map((l) => l.ms).sort((a, b) => a - b);
  $("latency").textContent = last.length ? `${Math.round(last[Math.floor(last.length / 2)])} ms (median of the last ${last.length})` : "-";
  $("elapsed").textContent = startedAt && stats.state === "streaming" ? `${((now - startedAt) / 1000).toFixed(1)} s` : $("elapsed").textContent;
  $("prompt-index").textContent = stats.promptIndex === null ? "-" : String(stats.promptIndex);
}, 250);

connect();
