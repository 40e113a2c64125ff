// Trace files in the page: reading one the user picked or dropped (either form),
// and writing the shown run as a trace JSON in the schema `moeviz record` writes
// (docs/trace-format.md), so `moeviz.trace.load` reads it back.
import { TraceError, TRACE_FORMAT, TRACE_VERSION, flattenRouting, validateHeader } from "./tracecheck.js";
import { hasMoetraceMagic, parseMoetrace } from "./moetrace.js";

// A bigger trace would take the tab's memory several times over once parsed;
// `moeviz stats` reads such traces fine.
export const MAX_TRACE_BYTES = 128 * 1024 * 1024;

export async function readTraceFile(file) {
  if (file.size > MAX_TRACE_BYTES) {
    throw new TraceError(`the file is ${(file.size / 2 ** 20).toFixed(0)} MiB; the page opens traces up to ` +
      `${MAX_TRACE_BYTES / 2 ** 20} MiB (moeviz stats reads bigger ones)`);
  }
  return parseTraceBytes(await file.arrayBuffer());
}

// Either form, told apart by the binary magic (as moeviz.trace.loads does), as the
// page's in-memory trace (tracecheck.js: routing in flat typed arrays).
export function parseTraceBytes(buffer) {
  if (hasMoetraceMagic(buffer)) return parseMoetrace(buffer);
  let obj;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buffer));
  } catch (e) {
    // the engine's message may quote the file's bytes: keep only its printable start
    const why = String(e.message).split("\n")[0].replace(/[^\x20-\x7e]+/g, "?").slice(0, 80);
    throw new TraceError(`not a moeviz trace: neither a .moetrace file nor JSON text (${why})`);
  }
  validateHeader(obj);
  return flattenRouting(obj);
}

// The run held in `state` (RunState) as a trace object, fields in the order
// moeviz.trace.io.to_json_dict writes them. Routing is the page's: weights arrived
// on the wire rounded to 6 decimals (docs/protocol.md), stored as float32.
export function traceFromState(state, { meta = null, version = "" } = {}) {
  const { L, K, E } = state, n = state.nTokens, run = state.run || {};
  const ids = new Array(n), weights = new Array(n);
  let withProbs = state.hasProbs;
  for (let t = 0; t < n && withProbs; t++) withProbs = !!state.probsOf(t);
  const probs = withProbs ? new Array(n) : null;
  for (let t = 0; t < n; t++) {
    const it = new Array(L), wt = new Array(L);
    for (let l = 0; l < L; l++) {
      const o = (t * L + l) * K;
      it[l] = Array.from(state.ids.subarray(o, o + K));
      wt[l] = Array.from(state.weights.subarray(o, o + K), shortestFloat32);
    }
    ids[t] = it; weights[t] = wt;
    if (probs) {
      const p = state.probsOf(t);
      probs[t] = Array.from({ length: L }, (_, l) => Array.from(p.subarray(l * E, (l + 1) * E), shortestFloat32));
    }
  }
  const trace = {
    format: TRACE_FORMAT, version: TRACE_VERSION, model: state.model, prompt: run.prompt ?? "",
    settings: run.settings || {}, tokens: state.tokens.map((t) => ({ id: t.id, text: t.text, prompt: t.prompt })),
  };
  if (state.finish) trace.finish = state.finish;
  trace.meta = meta || { created: new Date().toISOString().replace(/\.\d+Z$/, "+00:00"), moeviz_version: version };
  trace.routing = { expert_ids: ids, weights, ...(probs ? { probs } : {}) };
  if (state.candidates && state.candidates.present && state.candidates.n === n) {
    trace.candidates = state.candidates.toJSON(shortestFloat32);
  }
  return trace;
}

// The shortest decimal that reads back as the same float32: "0.123457", not the
// float64 expansion "0.12345699965953827" (both load to the same trace).
export function shortestFloat32(v) {
  if (!Number.isFinite(v) || Number.isInteger(v)) return v;
  for (let p = 1; p < 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return s;
  }
  return Number(v.toPrecision(9));
}

// Hands a Blob to the browser as a download named `filename`.
export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// A file name from free text: letters, digits, - and _.
export function fileSlug(text, fallback = "run") {
  const s = String(text || "").replace(/\.(json|moetrace)$/i, "").replace(/[^A-Za-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "").toLowerCase();
  return s.slice(0, 60) || fallback;
}

// Open by file picker (`input`) and by dropping files anywhere on `target`.
// onFiles(FileList-like array) gets every file at once, in the order given.
export function wireFileOpening({ input, button, target, onFiles }) {
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";            // picking the same file again fires `change` again
    if (files.length) onFiles(files);
  });
  const hasFiles = (ev) => ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes("Files");
  let depth = 0;                 // dragenter/leave fire for every child element crossed
  target.addEventListener("dragenter", (ev) => { if (hasFiles(ev)) { depth++; target.classList.add("dropping"); } });
  target.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; target.classList.remove("dropping"); } });
  target.addEventListener("dragover", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();         // allows the drop (and keeps the browser from navigating to the file)
    ev.dataTransfer.dropEffect = "copy";
  });
  target.addEventListener("drop", (ev) => {
    depth = 0;
    target.classList.remove("dropping");
    const files = ev.dataTransfer ? [...ev.dataTransfer.files] : [];
    if (!files.length) return;
    ev.preventDefault();
    onFiles(files);
  });
}
