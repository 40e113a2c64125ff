// Wiring: one RunState fed by messages (live socket, or a replayed trace), views
// that read it, and one animation-frame loop that advances playback and lets each
// view redraw what changed. Exposes a read-only `window.moeviz` for tests.
import { RunState } from "./state.js";
import { LiveSocket } from "./socket.js";
import { Controls } from "./controls.js";
import { Playback } from "./playback.js";
import { TokenStream } from "./tokens.js";
import { PanelView } from "./panel.js";
import { HeatmapView } from "./heatmap.js";
import { DormantView } from "./dormant.js";
import { HeaderView } from "./header.js";
import { traceToMessages, fetchTrace, fetchManifest } from "./replay.js";
import { mountAnalysis } from "./analysis/panels.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("moeviz-config").textContent);
const hasShape = (m) => m && Array.isArray(m.moe_layers) && m.n_expert > 0;
const state = new RunState(hasShape(config.model) ? config.model : null);

const panel = new PanelView($("panel-canvas"), state, { title: $("panel-title") });
const heatmap = new HeatmapView($("heatmap-canvas"), state, { legend: $("heatmap-legend") });
const tokens = new TokenStream($("tokens"), state, {
  onHover: (i) => { panel.hovered = i; },
  onPin: (i) => { panel.pinned = i; },
});
const dormant = new DormantView($("dormant"), state);
const header = new HeaderView({
  name: $("model-name"), arch: $("model-arch"), total: $("stat-total"), active: $("stat-active"),
  token: $("stat-token"), tokenText: $("stat-token-text"), hit: $("stat-hit"), sharedNote: $("shared-note"),
}, state);
const playback = new Playback(state, $("playback"));
// Analysis panels (web/js/analysis/): figures of moeviz.analysis over the tokens
// applied so far; a view like the others.
const analysis = mountAnalysis({ root: $("analysis"), state, heatmap });
const views = [tokens, panel, heatmap, dormant, header, analysis];

for (const b of document.querySelectorAll("[data-measure]")) {
  b.addEventListener("click", () => {
    heatmap.setMode(b.dataset.measure);
    for (const o of document.querySelectorAll("[data-measure]")) o.setAttribute("aria-pressed", String(o === b));
  });
}

let connection = "offline";     // live mode: connecting | open | closed
let pending = false;            // a generate was sent and no start/error came back yet

function handle(msg) {
  if (msg.type === "start") {
    playback.follow();
    panel.pinned = null;
    panel.hovered = null;
  }
  if (msg.type === "start" || msg.type === "error" || msg.type === "done") pending = false;
  state.ingest(msg);
}

// ---- status line ------------------------------------------------------------

let shownStatus = "";
function renderStatus() {
  const running = pending || state.status === "running" || state.status === "queued";
  const text = connection === "closed" ? "disconnected from the server, reconnecting…"
    : pending ? "starting…" : state.message || (config.mode === "live" ? "ready" : "");
  const key = `${text}|${state.status}|${running}|${connection}|${state.permalink}`;
  if (key === shownStatus) return;
  shownStatus = key;
  const el = $("status");
  el.textContent = text;
  el.className = `status ${state.status === "error" || connection === "closed" ? "error" : ""}`;
  controls && controls.setRunning(running, connection === "open");
  const link = $("permalink");
  link.hidden = !state.permalink;
  if (state.permalink) link.href = state.permalink;
  document.body.dataset.status = state.status;
}

// ---- the frame loop -----------------------------------------------------------

let frames = 0;
function frame(now) {
  playback.tick(now);
  for (const v of views) v.update();
  playback.render();
  renderStatus();
  frames++;
  requestAnimationFrame(frame);
}

// ---- modes ----------------------------------------------------------------------

let controls = null;
if (config.mode === "live") {
  const socket = new LiveSocket(LiveSocket.defaultUrl(), {
    onMessage: handle,
    onStatus: (s) => { connection = s; },
  });
  controls = new Controls($("controls"), {
    onGenerate: (req) => { if (socket.send(req)) pending = true; },
    onStop: () => {
      socket.send({ type: "cancel" });
      // a run still waiting in the queue is dropped without a `done`
      if (state.status === "queued") { state.status = "cancelled"; state.message = "cancelled while queued"; }
      pending = false;
    },
  });
  controls.load().catch((e) => { state.message = `could not load prompts: ${e.message}`; });
  socket.connect();
} else {
  connection = "open";
  startReplay().catch((e) => { state.status = "error"; state.message = e.message; });
}

async function startReplay() {
  if (config.mode === "replay") {
    $("replay-note").textContent = `run ${config.run_id}`;
    play(await fetchTrace(`../api/runs/${encodeURIComponent(config.run_id)}`), config.run_id);
    return;
  }
  const manifest = await fetchManifest("manifest.json");
  const select = $("run-select");
  for (const r of manifest.runs) select.appendChild(new Option(`${r.title} · ${r.n_tokens} tokens`, r.file));
  const load = async () => play(await fetchTrace(select.value), null);
  select.addEventListener("change", () => load().catch((e) => { state.status = "error"; state.message = e.message; }));
  $("replay-note").textContent = `${manifest.runs.length} recorded run${manifest.runs.length === 1 ? "" : "s"}`;
  if (manifest.runs.length) await load();
}

function play(trace, runId) {
  for (const msg of traceToMessages(trace, runId)) handle(msg);
  state.message = `replay: ${state.message}`;
  selectFromHash();
}

// `#t=<n>` in a link selects token n: the cursor stops just after it and it is pinned.
function selectFromHash() {
  const t = new URLSearchParams(location.hash.slice(1)).get("t");
  if (t === null || !/^\d+$/.test(t) || Number(t) >= state.nTokens) return;
  const n = Number(t);
  playback.seek(n + 1);
  tokens.pin(n);
  panel.pinned = n;
}

// ---- window.moeviz: the page's figures, read-only, for tests and the console ----

const dormantOf = (phase) => {
  const d = state.dormant(phase);
  return { total: d.total, fraction: d.fraction, perLayer: d.perLayer, tokens: d.tokens };
};
const api = {
  get mode() { return config.mode; },
  get model() { return state.model ? structuredClone(state.model) : null; },
  get status() { return state.status; },
  get message() { return state.message; },
  get done() { return state.done; },
  get tokens() { return state.nTokens; },
  get promptTokens() { return state.nPrompt; },
  get applied() { return state.applied; },
  get expertsHit() { return state.hit.both; },
  get expertsHitByPhase() { return { ...state.hit }; },
  get dormant() { return { prefill: dormantOf("prefill"), decode: dormantOf("decode"), both: dormantOf("both") }; },
  get hasProbs() { return state.hasProbs; },
  get finish() { return state.finish ? { ...state.finish } : null; },
  get playing() { return playback.playing; },
  get playbackMode() { return playback.mode; },
  get heatmapMode() { return heatmap.mode; },
  get dormantPhase() { return dormant.phase; },
  get panelToken() { return panel.drawn.t; },
  get frames() { return frames; },
  // the analysis panels' figures at the cursor (plain JSON; see web/js/analysis/panels.js)
  analysis: (opts = {}) => analysis.figures(opts),
  tokenTexts: () => state.tokens.map((t) => t.text),
  counts: (phase = "both") => Array.from(state.counts[phase]),
  // where a cell is drawn, in canvas device pixels (view: "heatmap" | "panel")
  cellCenter: (view, moeRow, expert) => (view === "panel" ? panel : heatmap).grid.cellCenter(moeRow, expert),
};
Object.defineProperty(window, "moeviz", { value: Object.freeze(api), writable: false, configurable: false });

requestAnimationFrame(frame);
