// Wiring: one RunState fed by messages (live socket, or a replayed trace), views
// that read it, and one animation-frame loop that advances playback and lets each
// view redraw what changed. Exposes a read-only `window.moeviz` for tests.
import { RunState } from "./state.js";
import { CandidatesView, MaskOverlay, WhatIfControls } from "./whatif.js";
import { PrunePreview } from "./prunepreview.js";
import { LiveSocket } from "./socket.js";
import { ensureKey } from "./apikey.js";
import { LiveRunsView } from "./liveruns.js";
import { Controls } from "./controls.js";
import { Playback } from "./playback.js";
import { TokenStream } from "./tokens.js";
import { PanelView } from "./panel.js";
import { HEAT_PALETTE, HeatmapView } from "./heatmap.js";
import { DormantView } from "./dormant.js";
import { HeaderView } from "./header.js";
import { fetchTrace, fetchManifest, HEAD_TOKENS } from "./replay.js";
import { mountAnalysis } from "./analysis/panels.js";
import { readTraceFile, traceFromState, downloadBlob, fileSlug, wireFileOpening } from "./files.js";
import { figuresFromTrace, figuresFromState } from "./compare.js";
import { RunLibrary } from "./library.js";
import { ContextWarning } from "./context.js";
import { CompareView } from "./compareview.js";
import { captionedCanvas, downloadCanvasPNG, downloadCountsCSV } from "./exports.js";
import { CellInfo } from "./cellinfo.js";
import { wireKeys } from "./keys.js";
import { runTitle, settingsLine } from "./runname.js";
import { TOKEN_SELECTIONS, tokenSelection } from "./figures.js";

performance.mark("moeviz:modules-ready");     // every module fetched and run (bench/replay_load.py)
const $ = (id) => document.getElementById(id);
const config = JSON.parse($("moeviz-config").textContent);
const hasShape = (m) => m && Array.isArray(m.moe_layers) && m.n_expert > 0;
const state = new RunState(hasShape(config.model) ? config.model : null);

// prefers-reduced-motion: the panel shows each step whole (no sweep, glow or fade)
const motionQuery = window.matchMedia ? window.matchMedia("(prefers-reduced-motion: reduce)") : null;
const playback = new Playback(state, $("playback"));
const panel = new PanelView($("panel-canvas"), state, { title: $("panel-title"), pinned: () => tokens.pinned,
  mode: () => playback.mode, reducedMotion: () => !!(motionQuery && motionQuery.matches), speed: () => playback.speed });
const heatmap = new HeatmapView($("heatmap-canvas"), state, { legend: $("heatmap-legend") });
const tokens = new TokenStream($("tokens"), state, {
  onHover: (i) => { panel.hovered = i; },
});
const dormant = new DormantView($("dormant"), state, { onTokens: (sel) => heatmap.setTokens(sel) });
const header = new HeaderView({
  name: $("model-name"), arch: $("model-arch"), total: $("stat-total"), active: $("stat-active"),
  token: $("stat-token"), tokenText: $("stat-token-text"), hit: $("stat-hit"), dormant: $("stat-dormant"),
  sharedNote: $("shared-note"),
}, state, { pinned: () => tokens.pinned, dormantTokens: () => dormant.tokens });
// Analysis panels (web/js/analysis/): figures of moeviz.analysis over the tokens
// applied so far; a view like the others.
const analysis = mountAnalysis({ root: $("analysis"), state, heatmap });
// a heatmap cell chosen (click or keyboard): outlined, its expert beside it, and the
// analysis panels' expert-tokens tab on it
const cellInfo = new CellInfo(heatmap, state, { wrap: $("heatmap-wrap"), outline: $("cell-outline"), card: $("cell-info"),
  onChoose: (row, expert) => analysis.choose({ row, expert, tab: "profile" }) });
const views = [tokens, panel, heatmap, dormant, header, analysis, cellInfo];
const keys = wireKeys({ playback, dialog: $("keys") });
$("keys-button").addEventListener("click", () => keys.show());
// Runs the page can compare (finished live runs, the permalink's, opened files, a
// site's runs) and the compare card over them.
const library = new RunLibrary();
const compareView = new CompareView($("compare"), library);
views.push(compareView);
// What-if runs (live): top-k slider, masked experts clicked on the heatmap, candidates;
// and the current token's next-token candidates (any run that recorded them)
const whatIf = new WhatIfControls($("controls"));
whatIf.setModel(state.model);
const maskOverlay = new MaskOverlay(heatmap, state, whatIf, $("heatmap-wrap"));
const candidatesView = new CandidatesView($("candidates"), state, { pinned: () => tokens.pinned });
views.push(maskOverlay, candidatesView, { update: () => whatIf.setModel(liveModel || state.model) });
const prunePreview = new PrunePreview(heatmap, state, whatIf, $("heatmap-wrap"));   // issue 25
views.push(prunePreview);

for (const b of document.querySelectorAll("[data-measure]")) {
  b.addEventListener("click", () => {
    heatmap.setMode(b.dataset.measure);
    for (const o of document.querySelectorAll("[data-measure]")) o.setAttribute("aria-pressed", String(o === b));
  });
}

let connection = "offline";     // live mode: connecting | open | closed
let pending = false;            // a generate was sent and no start/error came back yet
// The run shown: {kind: "live" | "permalink" | "site" | "file", name, meta, entry}.
// Opened files replace it without touching the live connection.
let shown = null;
// The server's model (live mode). An opened file may hold another model's run:
// every live run starts by putting the server's model back.
let liveModel = hasShape(config.model) ? config.model : null;
// A page-level message (a file that could not be opened, ...): shown in the status
// line instead of the run's own until the next run or file replaces it.
let notice = null;

function handle(msg) {
  if (msg.type === "start") {
    playback.follow();
    panel.hovered = null;
  }
  if (msg.type === "start" || msg.type === "error" || msg.type === "done") pending = false;
  state.ingest(msg);
}

// Messages from the live socket: the model message (on every reconnect) must not
// replace an opened file's run, and each finished run joins the library.
function handleLive(msg) {
  if (msg.type === "runs") { if (liveRuns) liveRuns.setRuns(msg.runs); listServerRuns(msg.runs); return; }
  if (msg.type === "watching") { if (liveRuns) liveRuns.setWatching(msg.run); return; }
  if (msg.type === "model") {
    liveModel = msg.model;
    if (shown && shown.kind !== "live") return;
  }
  if (msg.type === "start") {
    if (liveModel) state.ingest({ type: "model", model: liveModel });
    shown = { kind: "live", name: runTitle(msg.prompt, msg.settings, { model: liveModel }), meta: null, entry: null,
      settings: msg.settings };
    document.body.dataset.shown = "live";
    whatIf.showRunK(msg.settings && msg.settings.experts_per_token);
    notice = null;
    library.setShown(null);
  }
  handle(msg);
  if (msg.type === "done" && shown && shown.kind === "live" && state.nTokens > 0) {
    // named by its prompt's title (or opening words); the id stays in the permalink
    const id = state.permalink ? ` · run ${state.permalink.slice(3)}` : "";
    const entry = library.add({ name: shown.name, kind: "live", label: promptLabel(state.run && state.run.prompt) + id,
      settings: shown.settings });
    shown.name = entry.name;
    library.setFigures(entry, figuresFromState(state, entry.name));
    library.setShown(entry);
    shown.entry = entry;
    if (state.permalink) listedPermalinks.add(state.permalink);
  }
}

// The server's finished runs (any page's, the API's) join the compare list, oldest
// first, so that a fresh page can compare them too; their traces are fetched from their
// permalinks only when compared. This page's own run joins when its `done` arrives.
const listedPermalinks = new Set();
function listServerRuns(runs) {
  const own = state.run && state.run.id;
  for (const r of [...(runs || [])].reverse()) {
    if (r.status !== "done" || typeof r.permalink !== "string" || listedPermalinks.has(r.permalink) || r.run === own) continue;
    listedPermalinks.add(r.permalink);
    const url = `/api/runs/${encodeURIComponent(r.permalink.split("/").pop())}.moetrace`;
    // named by title and start time: another page's run is not this page's "(2)"
    const at = Number.isFinite(r.queued_at) ? new Date(r.queued_at * 1000).toLocaleTimeString([], { hour12: false }) : "";
    library.add({ name: `${r.title || "untitled run"}${at ? ` · ${at}` : ""}`, kind: r.source === "api" ? "api" : "server",
      label: `${r.title} · ${r.permalink}`, load: async (name) => figuresFromTrace(await fetchTrace(url), name) });
  }
}

function promptLabel(prompt) {
  const text = typeof prompt === "string" ? prompt : (prompt || []).map((m) => m.content).join(" / ");
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

// Replays show what was asked: the run's title, its prompt and settings.
function showRunInfo(trace, fileName = null) {
  const prompt = trace.prompt;
  const other = liveModel && trace.model && trace.model.name !== liveModel.name ? trace.model.name : null;
  $("replay-note").textContent = runTitle(prompt, trace.settings, { model: trace.model, otherModel: other }) +
    (fileName ? ` · from ${fileName}` : "");
  $("replay-prompt").textContent = typeof prompt === "string" ? prompt
    : (prompt || []).map((m) => `${m.role}: ${m.content}`).join("\n");
  $("replay-settings").textContent = settingsLine(trace.settings, trace.model);
}

// ---- status line ------------------------------------------------------------

let shownStatus = "";
const isRunning = () => pending || state.status === "running" || state.status === "queued";
function renderStatus() {
  const running = isRunning();
  const text = notice ? notice.text : connection === "closed" ? "disconnected from the server, reconnecting…"
    : pending ? "starting…" : state.message || (config.mode === "live" ? "ready" : "");
  const isError = notice ? notice.error : state.status === "error" || connection === "closed";
  const key = `${text}|${isError}|${state.status}|${running}|${connection}|${state.permalink}`;
  if (key === shownStatus) return;
  shownStatus = key;
  const el = $("status");
  el.textContent = text;
  el.className = `status ${isError ? "error" : ""}`;
  controls && controls.setRunning(running, connection === "open");
  const link = $("permalink");
  // kept in the layout when absent: a link appearing at the end of a run must not push what is below
  link.style.visibility = state.permalink ? "visible" : "hidden";
  if (state.permalink) link.href = state.permalink; else link.removeAttribute("href");
  document.body.dataset.status = state.status;
}

// ---- before any run: say what will appear, and where ---------------------------

let shownEmpty = "";
const narrow = () => !!(window.matchMedia && window.matchMedia("(max-width: 700px)").matches);   // the phone layout
function renderEmpty() {
  const key = `${state.nTokens > 0}|${isRunning()}|${config.mode}|${!!state.model}`;
  if (key === shownEmpty) return;
  shownEmpty = key;
  const empty = state.nTokens === 0, el = $("panel-empty");
  el.hidden = !empty;
  document.body.dataset.empty = String(empty);
  if (!empty) return;
  el.textContent = isRunning() ? "prefilling the prompt…"
    : config.mode === "live" ? `No run yet. Pick a prompt${narrow() ? " below" : ""} and press Generate: each token will light the experts it is sent to, layer by layer.`
      : "loading the recorded run…";
}

// the model's shape in the intro ("picks 4 of its 64 experts" for the demo model), from /api/model
let introModel = null;
function renderIntro() {
  const m = state.model;
  if (!m || m === introModel) return;
  introModel = m;
  $("intro-k").textContent = String(m.n_expert_used);
  $("intro-e").textContent = String(m.n_expert);
}

// ---- the frame loop -----------------------------------------------------------

let frames = 0;
let requested;
const firstRequest = new Promise((resolve) => { requested = resolve; });
// When a run was drawn (performance.now() times; bench/replay_load.py reads them): the
// end of the first frame that drew its tokens (drawn) and of the first that drew it
// whole (doneDrawn: the same frame but for a long run shown by its head first), each
// with the start of the next frame (painted, donePainted: the browser painted between).
let drawnGen = -1, runTiming = null;
function stamp(drawn, painted, mark) {
  const t = runTiming;
  t[drawn] = performance.now();
  performance.mark(mark);
  requestAnimationFrame((next) => { t[painted] = next; });
}
function frame(now) {
  playback.tick(now);
  for (const v of views) v.update(now);
  if (state.nTokens > 0 && state.gen !== drawnGen) {
    drawnGen = state.gen;
    runTiming = { drawn: null, painted: null, doneDrawn: null, donePainted: null };
    stamp("drawn", "painted", "moeviz:run-drawn");
  }
  if (runTiming && state.done && runTiming.doneDrawn === null && state.gen === drawnGen) {
    stamp("doneDrawn", "donePainted", "moeviz:run-done-drawn");
  }
  renderEmpty();
  playback.render();
  renderStatus();
  renderFileButtons();
  renderIntro();
  frames++;
  requestAnimationFrame(frame);
}

// ---- modes ----------------------------------------------------------------------

performance.mark("moeviz:views-built");
let controls = null;
let liveRuns = null;     // the server's runs, any source: watch one (web/js/liveruns.js)
if (config.mode === "live") {
  const socket = new LiveSocket(LiveSocket.defaultUrl(), {
    onMessage: handleLive,
    onStatus: (s) => { connection = s; if (s === "open") socket.send({ type: "runs" }); },
  });
  liveRuns = new LiveRunsView($("controls"), {
    onWatch: (run) => { socket.send({ type: "watch", run }); },
    onUnwatch: () => { socket.send({ type: "unwatch" }); },
  });
  controls = new Controls($("controls"), {
    onGenerate: (req) => {
      if (!socket.send({ ...req, ...whatIf.fields() })) return;
      pending = true;
      // a phone shows the controls below the visualization: bring the run into view
      if (narrow()) {
        $("stream").scrollIntoView({ behavior: motionQuery && motionQuery.matches ? "auto" : "smooth", block: "start" });
      }
    },
    onStop: () => {
      socket.send({ type: "cancel" });
      // a run still waiting in the queue is dropped without a `done`
      if (state.status === "queued") { state.status = "cancelled"; state.message = "cancelled while queued"; }
      pending = false;
    },
  });
  controls.load().catch((e) => { state.message = `could not load prompts: ${e.message}`; });
  // the model's trained context (/api/model): a run set to go, or going, past it is warned
  const contextWarning = new ContextWarning($("ctx-warning"), state, { maxTokens: $("max-tokens") });
  views.push(contextWarning);
  fetch("api/model").then((r) => (r.ok ? r.json() : null)).then((m) => contextWarning.setModel(m)).catch(() => {});
  // serve --api-key: the key is asked for once (web/js/apikey.js) before the socket opens
  ensureKey().then(() => socket.connect(), (e) => { state.message = `could not reach the server: ${e.message}`; });
} else {
  connection = "open";
  startReplay().catch((e) => { state.status = "error"; state.message = e.message; }).finally(requested);
}

async function startReplay() {
  if (config.mode === "replay") {
    $("replay-note").textContent = "loading…";
    // the stored binary form, as the store keeps it: its arrays go into the state as they
    // are; a long run's head (its first tokens) first, drawn while the rest arrives
    const url = `../api/runs/${encodeURIComponent(config.run_id)}.moetrace`;
    let entry = null;
    const trace = await playStored(url, `${url}?head=${HEAD_TOKENS}`, (first) => {
      showRunInfo(first);
      entry = library.add({ name: runTitle(first.prompt, first.settings, { model: first.model }), kind: "permalink",
        label: `${promptLabel(first.prompt)} · run ${config.run_id}` });
      return { kind: "permalink", name: entry.name, runId: config.run_id, entry };
    });
    if (trace) {
      library.setFigures(entry, figuresFromTrace(trace, entry.name));
      selectFromHash();
    }
    return;
  }
  const manifest = await fetchManifest("manifest.json");
  const select = $("run-select");
  const entries = new Map();       // manifest file -> library entry (figures fetched when first needed)
  for (const r of manifest.runs) {
    select.appendChild(new Option(`${r.title} · ${r.n_tokens} tokens`, r.file));
    // the picker and the compare list call a run the same: by its title
    entries.set(r.file, library.add({ name: r.title || r.name, kind: "site", label: r.title, nTokens: r.n_tokens,
      load: async (name) => figuresFromTrace(await fetchTrace(r.file), name) }));
  }
  const heads = new Map(manifest.runs.map((r) => [r.file, r.head || null]));   // a long run's first tokens
  const load = async () => {
    const file = select.value, entry = entries.get(file);
    const trace = await playStored(file, heads.get(file), (first) => {
      showRunInfo(first);
      notice = null;
      return { kind: "site", name: entry.name, entry };
    });
    if (trace && !entry.figures) library.setFigures(entry, figuresFromTrace(trace, entry.name));
    return trace;
  };
  // one link per run: #run=<its name> opens it (a shared link, back and forward)
  const fileOf = (name) => (manifest.runs.find((r) => r.name === name) || {}).file;
  const nameOf = (file) => (manifest.runs.find((r) => r.file === file) || {}).name;
  const fail = (e) => { state.status = "error"; state.message = e.message; };
  select.addEventListener("change", () => {
    const params = new URLSearchParams(location.hash.slice(1));
    params.set("run", nameOf(select.value));
    params.delete("t");
    history.pushState(null, "", `#${params}`);
    load().catch(fail);
  });
  window.addEventListener("hashchange", () => {
    const file = fileOf(new URLSearchParams(location.hash.slice(1)).get("run"));
    if (file && file !== select.value) { select.value = file; load().then((t) => t && selectFromHash()).catch(fail); }
  });
  $("replay-note").textContent = `${manifest.runs.length} recorded run${manifest.runs.length === 1 ? "" : "s"}`;
  const linked = fileOf(new URLSearchParams(location.hash.slice(1)).get("run"));
  if (linked) select.value = linked;
  if (manifest.runs.length && await load()) selectFromHash();
}

// A stored run (a permalink's, a site's): its head first where it has one (headUrl: a
// long run's first tokens, moeviz/trace/partial.py), played at once, then the whole
// trace. sourceOf(first trace) -> play()'s source. Resolves to the whole trace, or to
// null when another run replaced it on the way.
async function playStored(url, headUrl, sourceOf) {
  const fetching = fetchTrace(headUrl || url);
  requested();
  const first = await fetching;
  play(first, sourceOf(first));
  if (!first.partial) return first;
  const gen = state.gen;
  const trace = await fetchTrace(url);
  if (state.gen !== gen) return null;
  state.completeTrace(trace);
  state.message = `replay: ${state.message}`;
  performance.mark("moeviz:run-complete");
  return trace;
}

// Show a whole recorded run (the page's in-memory trace, tracecheck.js): loaded into
// the state in bulk, then played from its first token as a live run would be.
// source: {kind, name, runId?, entry}
function play(trace, source) {
  shown = { kind: source.kind, name: source.name, meta: trace.meta || null, entry: source.entry };
  // an opened file gets the REPLAY card a permalink has: its title, prompt and settings
  document.body.dataset.shown = source.kind;
  if (source.kind === "file") showRunInfo(trace, source.name);
  library.setShown(source.entry);
  playback.follow();
  panel.hovered = null;
  pending = false;
  state.loadTrace(trace, source.runId || null);
  state.message = `${source.kind === "file" ? source.name : "replay"}: ${state.message}`;
  performance.mark("moeviz:run-loaded");
}

// ---- trace files: open (picker, drop), save ----------------------------------------

async function openFiles(files) {
  if (isRunning()) {
    notice = { text: "a run is in progress: stop it (or let it finish) before opening a trace file", error: true };
    return;
  }
  let opened = null, failed = null;
  for (const file of files) {
    try {
      const trace = await readTraceFile(file);
      const entry = library.add({ name: file.name, kind: "file", label: promptLabel(trace.prompt) });
      library.setFigures(entry, figuresFromTrace(trace, entry.name));
      opened = { trace, entry };
    } catch (e) {
      // one line, whatever threw: the run shown stays as it was
      failed = `could not open ${file.name}: ${String(e && e.message ? e.message : e).split("\n")[0]}`;
    }
  }
  if (opened) {
    notice = null;
    play(opened.trace, { kind: "file", name: opened.entry.name, entry: opened.entry });
    if (config.mode === "static") $("run-select").selectedIndex = -1;     // the run shown is not a site run now
  }
  if (failed) notice = { text: failed, error: true };
}

wireFileOpening({ input: $("open-file"), button: $("open-trace"), target: document.body,
  onFiles: (files) => openFiles(files).catch((e) => { notice = { text: String(e.message || e), error: true }; }) });

// The shown run as a trace JSON (moeviz record's schema), built from the page's state.
function currentTrace() {
  return traceFromState(state, { meta: shown && shown.meta, version: config.version || "" });
}
const currentSlug = () => fileSlug(shown ? shown.name : "run");

$("save-trace").addEventListener("click", () => {
  const blob = new Blob([JSON.stringify(currentTrace())], { type: "application/json" });
  downloadBlob(blob, `moeviz-${currentSlug()}.json`);
});

// The stored binary trace, when the run has a permalink on this server.
function storedTraceUrl() {
  if (config.mode === "live" && state.permalink && shown && shown.kind === "live") {
    return `/api/runs/${encodeURIComponent(state.permalink.slice(3))}.moetrace`;
  }
  if (config.mode === "replay" && shown && shown.kind === "permalink") return `../api/runs/${encodeURIComponent(config.run_id)}.moetrace`;
  return null;
}

let shownFiles = "";
function renderFileButtons() {
  const running = isRunning(), url = storedTraceUrl();
  const key = `${running}|${state.nTokens > 0}|${state.gen}|${url}`;
  if (key === shownFiles) return;
  shownFiles = key;
  $("save-trace").disabled = running || state.nTokens === 0;
  const a = $("save-moetrace");
  a.hidden = !url || running;
  if (url) { a.href = url; a.download = `moeviz-${currentSlug()}.moetrace`; }
}

// ---- exports: heatmap PNG and counts CSV, the delta heatmap's PNG ---------------------

$("heatmap-png").addEventListener("click", () => {
  if (state.model) downloadCanvasPNG(heatmapPicture(), `moeviz-heatmap-${currentSlug()}.png`);
});
// the heatmap as shown, with the run's title, model, dormant figure and a legend
function heatmapPicture() {
  const m = state.model, d = state.dormant(dormant.tokens), open = state.L * state.E - d.masked;
  const css = HEAT_PALETTE.css;
  return captionedCanvas(heatmap.grid.canvas, {
    title: shown ? shown.name : "moeviz run",
    model: `${m.name} · ${m.moe_layers.length} MoE layers × ${m.n_expert} experts, top-${state.K}`,
    figure: `${d.total} of ${open} experts dormant (${(100 * d.fraction).toFixed(1)}%)${d.masked ? `, ${d.masked} masked` : ""}`,
    legend: [[css[0], "never chosen (dormant)"], [[css[1], css[128], css[255]], $("heatmap-legend").textContent]],
  });
}
$("heatmap-csv").addEventListener("click", () => {
  if (state.model) downloadCountsCSV(state.model, state.counts.all, `moeviz-counts-${currentSlug()}.csv`);
});
$("delta-png").addEventListener("click", () => {
  const f = compareView.figures();
  if (compareView.deltaCanvas && f && f.delta) {
    downloadCanvasPNG(compareView.deltaCanvas, `moeviz-delta-${fileSlug(f.delta.a)}-vs-${fileSlug(f.delta.b)}.png`);
  }
});

// `#t=<n>` in a link selects token n: the cursor stops just after it and it is pinned.
function selectFromHash() {
  const t = new URLSearchParams(location.hash.slice(1)).get("t");
  if (t === null || !/^\d+$/.test(t) || Number(t) >= state.nTokens) return;
  const n = Number(t);
  playback.seek(n + 1);
  tokens.pin(n);
}

// ---- window.moeviz: the page's figures, read-only, for tests and the console ----

const dormantOf = (sel) => {
  const d = state.dormant(sel);
  return { total: d.total, fraction: d.fraction, perLayer: d.perLayer, tokens: d.tokens, masked: d.masked,
           maskedPerLayer: d.maskedPerLayer };
};
const api = {
  get mode() { return config.mode; },
  get model() { return state.model ? structuredClone(state.model) : null; },
  get status() { return state.status; },
  get message() { return state.message; },
  // a requested run that has not started yet makes the page not done (the old run is going away)
  get done() { return state.done && !pending; },
  get tokens() { return state.nTokens; },
  get promptTokens() { return state.nPrompt; },
  get applied() { return state.applied; },
  get expertsHit() { return state.hit.all; },
  // per token selection (figures.js): {all, prompt, generated}
  get expertsHitByTokens() { return { ...state.hit }; },
  get dormant() { return Object.fromEntries(TOKEN_SELECTIONS.map((sel) => [sel, dormantOf(sel)])); },
  get hasProbs() { return state.hasProbs; },
  get finish() { return state.finish ? { ...state.finish } : null; },
  get playing() { return playback.playing; },
  get playbackMode() { return playback.mode; },
  get speed() { return playback.speed; },
  get heatmapMode() { return heatmap.mode; },
  get dormantTokens() { return dormant.tokens; },
  get panelToken() { return panel.drawn.t; },
  // what the panel drew last: {kind: "token", t | "batch", range, still, front (layers lit), layers,
  // sweeping, dimmed: earlier targets drawn dim}
  get flow() { return panel.drawn.flow ? structuredClone(panel.drawn.flow) : null; },
  get reducedMotion() { return !!(motionQuery && motionQuery.matches); },
  // the heatmap cell chosen ({layer, expert}) or null; the tokens the heatmap counts
  get chosenCell() { return cellInfo.chosen; },
  get heatmapTokens() { return heatmap.tokens; },
  get frames() { return frames; },
  // when the shown run was first drawn and painted, and drawn whole ({drawn, painted,
  // doneDrawn, donePainted}: performance.now() times)
  get runTiming() { return runTiming ? { ...runTiming } : null; },
  // the run shown ({kind, name}), the status line's page-level message, the runs listed for comparing
  get source() { return shown ? { kind: shown.kind, name: shown.name } : null; },
  get notice() { return notice ? notice.text : ""; },
  get runs() { return library.entries.map((e) => ({ name: e.name, kind: e.kind, tokens: e.nTokens })); },
  // the last comparison's figures (plain JSON; see web/js/compareview.js), or {error}, or null
  compare: () => compareView.figures(),
  // the what-if controls ({experts_per_token, mask, maskMode, candidates, fields}) and the
  // current token's candidates ({t, candidates: [{id, p, text}]} or null)
  whatIf: () => structuredClone(whatIf.state()),
  candidates: () => structuredClone(candidatesView.figures()),
  // the prune preview ({on, keep, dropped: [[layer, expert]], keptShare}) or null
  prunePreview: () => structuredClone(prunePreview.figures()),
  get k() { return state.K; },
  // the shown run as the trace JSON "Save trace" downloads
  trace: () => (state.model ? currentTrace() : null),
  // the analysis panels' figures at the cursor (plain JSON; see web/js/analysis/panels.js)
  analysis: (opts = {}) => analysis.figures(opts),
  tokenTexts: () => state.tokens.map((t) => t.text),
  counts: (tokens = "all") => Array.from(state.counts[tokenSelection(tokens)]),
  // where a cell is drawn, in canvas device pixels (view: "heatmap" | "panel" | "delta")
  cellCenter: (view, moeRow, expert) =>
    (view === "panel" ? panel.grid : view === "delta" ? compareView.delta.grid : heatmap.grid).cellCenter(moeRow, expert),
};
Object.defineProperty(window, "moeviz", { value: Object.freeze(api), writable: false, configurable: false });

// A replay's first frame (which builds every view for the model) waits for its first
// trace request to be out, so that the trace arrives while the frame runs.
if (config.mode === "live") requested();
setTimeout(requested, 500);        // never longer
firstRequest.then(() => requestAnimationFrame(frame));
