// Trace validation in the page: the checks of moeviz/trace/schema.py, so a file the
// page accepts is one `moeviz.trace.load` accepts too, and a bad one is refused with
// the same kind of one-line message naming the field (docs/trace-format.md).
//
// Routing may be nested JS arrays (the JSON form) or nested typed-array views (the
// binary form, see moetrace.js): both index as ids[t][l][k].

export const TRACE_FORMAT = "moeviz-trace";
export const TRACE_VERSION = 1;
const MODEL_FIELDS = ["name", "architecture", "n_layer", "moe_layers", "n_expert", "n_expert_used",
  "total_params", "active_params"];

export class TraceError extends Error {}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isCount = (v) => Number.isInteger(v) && v >= 0;

export function validateHeader(h) {
  if (!isObject(h)) throw new TraceError("a trace must be a JSON object");
  if (h.format !== TRACE_FORMAT) {
    throw new TraceError(`not a moeviz trace (format is ${JSON.stringify(h.format ?? null)}, expected "${TRACE_FORMAT}")`);
  }
  if (h.version !== TRACE_VERSION) {
    throw new TraceError(`unsupported trace version ${JSON.stringify(h.version ?? null)} (this page reads version ${TRACE_VERSION})`);
  }
  const m = h.model;
  if (!isObject(m)) throw new TraceError("trace has no 'model' object");
  for (const f of MODEL_FIELDS) if (!(f in m)) throw new TraceError(`model.${f} is missing`);
  for (const f of ["n_layer", "n_expert", "n_expert_used", "total_params", "active_params"]) {
    if (!isCount(m[f])) throw new TraceError(`model.${f} must be a non-negative integer`);
  }
  if (m.n_expert < 1 || m.n_expert_used < 1 || m.n_expert_used > m.n_expert) {
    throw new TraceError("model.n_expert_used must be between 1 and model.n_expert");
  }
  const ml = m.moe_layers;
  if (!Array.isArray(ml) || !ml.every((i) => Number.isInteger(i) && i >= 0 && i < m.n_layer)) {
    throw new TraceError("model.moe_layers must list layer indices below model.n_layer");
  }
  for (let i = 1; i < ml.length; i++) {
    if (ml[i] <= ml[i - 1]) throw new TraceError("model.moe_layers must be increasing and distinct");
  }
  if (h.settings !== undefined && !isObject(h.settings)) throw new TraceError("settings must be an object");
  if (!Array.isArray(h.tokens)) throw new TraceError("trace has no 'tokens' list");
  let seenGenerated = false;
  h.tokens.forEach((t, i) => {
    if (!(isObject(t) && Number.isInteger(t.id) && typeof t.text === "string" && typeof t.prompt === "boolean")) {
      throw new TraceError(`tokens[${i}] must be {"id": int, "text": str, "prompt": bool}`);
    }
    if (t.prompt && seenGenerated) throw new TraceError(`tokens[${i}] is a prompt token after a generated one`);
    seenGenerated = seenGenerated || !t.prompt;
  });
}

// Shapes [n_tokens][n_moe_layers][k] (probs: [..][n_expert]), expert ids in
// [0, n_expert), finite weights and probabilities.
export function validateRouting(trace) {
  const r = trace.routing;
  if (!isObject(r)) throw new TraceError("trace has no 'routing' object");
  const m = trace.model, n = trace.tokens.length, L = m.moe_layers.length, K = m.n_expert_used, E = m.n_expert;
  for (const name of ["expert_ids", "weights"]) if (!(name in r)) throw new TraceError(`routing.${name} is missing`);
  checkShape("routing.expert_ids", r.expert_ids, n, L, K,
    (v) => (!Number.isInteger(v) ? " must be an integer" : v < 0 || v >= E ? ` = ${v} is outside [0, ${E})` : null));
  checkShape("routing.weights", r.weights, n, L, K, notFinite);
  if (r.probs !== undefined && r.probs !== null) checkShape("routing.probs", r.probs, n, L, E, notFinite);
}

const notFinite = (v) => (typeof v === "number" && Number.isFinite(v) ? null : " is not a finite number");

// bad(value) -> null when the value is fine, else what is wrong with it
function checkShape(name, a, n, L, K, bad) {
  const expected = `expected [${n}, ${L}, ${K}] [n_tokens][n_moe_layers][k or n_expert]`;
  const isList = (v) => Array.isArray(v) || ArrayBuffer.isView(v);
  if (!isList(a) || a.length !== n) throw new TraceError(`${name} has ${isList(a) ? a.length : "no"} rows, ${expected}`);
  for (let t = 0; t < n; t++) {
    const at = a[t];
    if (!isList(at) || at.length !== L) throw new TraceError(`${name}[${t}] has the wrong shape, ${expected}`);
    for (let l = 0; l < L; l++) {
      const atl = at[l];
      if (!isList(atl) || atl.length !== K) throw new TraceError(`${name}[${t}][${l}] has the wrong shape, ${expected}`);
      for (let k = 0; k < K; k++) {
        const why = bad(atl[k]);
        if (why) throw new TraceError(`${name}[${t}][${l}][${k}]${why}`);
      }
    }
  }
}
