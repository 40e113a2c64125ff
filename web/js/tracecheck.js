// Trace validation in the page: the checks of moeviz/trace/schema.py, so a file the
// page accepts is one `moeviz.trace.load` accepts too, and a bad one is refused with
// the same kind of one-line message naming the field (docs/trace-format.md).
//
// Routing is checked flat (see validateRouting below): a .moetrace file's typed
// arrays as they are, a JSON trace's nested lists once flattened.

export const TRACE_FORMAT = "moeviz-trace";
export const TRACE_VERSION = 1;
const MODEL_FIELDS = ["name", "architecture", "n_layer", "moe_layers", "n_expert", "n_expert_used",
  "total_params", "active_params"];

export class TraceError extends Error {}

// Experts per token in a run's routing arrays: the run's override
// (settings.experts_per_token, a what-if run) or the model's own top-k.
export function routingK(model, settings) {
  const k = settings && settings.experts_per_token;
  return Number.isInteger(k) ? k : model.n_expert_used;
}

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
  if (m.n_expert > MAX_EXPERTS) {
    throw new TraceError(`model.n_expert is ${m.n_expert}; traces have at most ${MAX_EXPERTS} experts (llama.cpp's limit)`);
  }
  if (m.n_layer > MAX_LAYERS) {
    throw new TraceError(`model.n_layer is ${m.n_layer}; traces have at most ${MAX_LAYERS} layers (llama.cpp's limit)`);
  }
  const ml = m.moe_layers;
  if (!Array.isArray(ml) || !ml.every((i) => Number.isInteger(i) && i >= 0 && i < m.n_layer)) {
    throw new TraceError("model.moe_layers must list layer indices below model.n_layer");
  }
  for (let i = 1; i < ml.length; i++) {
    if (ml[i] <= ml[i - 1]) throw new TraceError("model.moe_layers must be increasing and distinct");
  }
  if (h.settings !== undefined && !isObject(h.settings)) throw new TraceError("settings must be an object");
  validateInterventions(h.settings || {}, m);
  if (!Array.isArray(h.tokens)) throw new TraceError("trace has no 'tokens' list");
  let seenGenerated = false;
  h.tokens.forEach((t, i) => {
    if (!(isObject(t) && Number.isInteger(t.id) && typeof t.text === "string" && typeof t.prompt === "boolean")) {
      throw new TraceError(`tokens[${i}] must be {"id": int, "text": str, "prompt": bool}`);
    }
    if (t.prompt && seenGenerated) throw new TraceError(`tokens[${i}] is a prompt token after a generated one`);
    seenGenerated = seenGenerated || !t.prompt;
  });
  validateFields(h, m, h.tokens);
}

// Shapes a trace may claim, and the rest of a header field by field, as schema.py's
// _validate_fields / _validate_settings / _validate_finish check them.
const MAX_LAYERS = 512, MAX_EXPERTS = 1024, MAX_VOCAB = 2 ** 31 - 1, MAX_TOKENS = 1 << 24;
const FINISH_REASONS = ["length", "eos", "stop", "context", "cancelled"];
const SETTING_TYPES = { max_tokens: "integer", top_k: "integer", seed: "integer", temperature: "number", top_p: "number",
  probs: "bool", capture: "text", prompt_name: "text", prompt_title: "text", prompt_domain: "text" };
const isKind = { integer: Number.isInteger, number: (v) => typeof v === "number", bool: (v) => typeof v === "boolean",
  text: (v) => typeof v === "string" };
const given = (v) => v !== undefined && v !== null;

function validateFields(h, m, tokens) {
  for (const f of ["name", "architecture", "gating"]) {
    if (given(m[f]) && typeof m[f] !== "string") throw new TraceError(`model.${f} must be a string`);
  }
  const dense = m.dense_layers;
  if (given(dense) && !(Array.isArray(dense) && dense.every((i) => Number.isInteger(i) && i >= 0 && i < m.n_layer))) {
    throw new TraceError("model.dense_layers must list layer indices below model.n_layer");
  }
  for (const f of ["n_vocab", "n_embd", "n_shared_experts", "n_expert_groups", "n_group_used"]) {
    if (given(m[f]) && !(Number.isInteger(m[f]) && m[f] >= 0 && m[f] <= MAX_VOCAB)) {
      throw new TraceError(`model.${f} must be a non-negative integer`);
    }
  }
  if (tokens.length > MAX_TOKENS) throw new TraceError(`trace has ${tokens.length} tokens; at most ${MAX_TOKENS} are read`);
  const vocab = m.n_vocab || MAX_VOCAB;
  tokens.forEach((t, i) => {
    if (t.id < 0 || t.id >= vocab) throw new TraceError(`tokens[${i}].id ${t.id} is not a token id (0-${vocab - 1})`);
  });
  if (given(h.prompt) && typeof h.prompt !== "string" && !Array.isArray(h.prompt)) {
    throw new TraceError("prompt must be text or a list of chat messages");
  }
  if (h.meta !== undefined && !isObject(h.meta)) throw new TraceError("meta must be an object");
  const s = h.settings || {};
  for (const [f, kind] of Object.entries(SETTING_TYPES)) {
    if (given(s[f]) && !isKind[kind](s[f])) throw new TraceError(`settings.${f} must be ${kind === "integer" ? "an" : "a"} ${kind}`);
  }
  if (given(s.stop) && !(Array.isArray(s.stop) && s.stop.every((x) => typeof x === "string"))) {
    throw new TraceError("settings.stop must be a list of strings");
  }
  if (given(h.finish)) validateFinish(h.finish, tokens);
}

function validateFinish(f, tokens) {
  if (!isObject(f)) throw new TraceError("finish must be an object");
  if (!FINISH_REASONS.includes(f.reason)) throw new TraceError(`finish.reason must be one of ${FINISH_REASONS.join(", ")}`);
  for (const k of ["n_prompt", "n_generated"]) {
    if (k in f && !isCount(f[k])) throw new TraceError(`finish.${k} must be a non-negative integer`);
  }
  for (const k of ["prefill_seconds", "decode_seconds"]) {
    if (given(f[k]) && !(typeof f[k] === "number" && f[k] >= 0 && f[k] < Infinity)) {
      throw new TraceError(`finish.${k} must be a non-negative number of seconds`);
    }
  }
  const nPrompt = tokens.filter((t) => t.prompt).length;
  if ("n_generated" in f && f.n_generated !== tokens.length - nPrompt) {
    throw new TraceError(`finish.n_generated is ${f.n_generated} but the trace has ${tokens.length - nPrompt} generated tokens`);
  }
  if ("n_prompt" in f && tokens.length && f.n_prompt !== nPrompt) {
    throw new TraceError(`finish.n_prompt is ${f.n_prompt} but the trace has ${nPrompt} prompt tokens`);
  }
}

// settings.experts_per_token / mask / candidates, as moeviz/trace/schema.py checks them
function validateInterventions(s, m) {
  const E = m.n_expert, k = s.experts_per_token;
  if (k !== undefined && k !== null && !(Number.isInteger(k) && k >= 1 && k <= E)) {
    throw new TraceError(`settings.experts_per_token must be an integer from 1 to ${E} (model.n_expert)`);
  }
  const mask = s.mask;
  if (mask !== undefined && mask !== null) {
    if (!Array.isArray(mask)) throw new TraceError("settings.mask must be a list of [layer, expert] pairs");
    mask.forEach((p, i) => {
      if (!(Array.isArray(p) && p.length === 2 && Number.isInteger(p[0]) && Number.isInteger(p[1]))) {
        throw new TraceError(`settings.mask[${i}] must be a [layer, expert] pair of integers`);
      }
      if (!m.moe_layers.includes(p[0])) throw new TraceError(`settings.mask[${i}]: layer ${p[0]} is not in model.moe_layers`);
      if (p[1] < 0 || p[1] >= E) throw new TraceError(`settings.mask[${i}]: expert ${p[1]} is outside [0, ${E})`);
    });
  }
  const n = s.candidates;
  if (n !== undefined && n !== null && !isCount(n)) throw new TraceError("settings.candidates must be a non-negative integer");
}

// The page's in-memory trace: the header fields as in the JSON form, and `routing`
// as flat typed arrays, C order, the layout RunState keeps (RunState.loadTrace takes
// them as they are):
//   expert_ids  Int16Array | Int32Array [n_tokens * n_moe_layers * k]
//   weights     Float32Array, the same length
//   probs       Float32Array [n_tokens * n_moe_layers * n_expert], or null
// (k: routingK, the run's top-k) and, when the run recorded next-token candidates,
// `candidates` {N, ids: Int32Array [n_tokens * N], probs: Float32Array, texts: {id: text}}.
// A .moetrace file gives them straight from its buffer (moetrace.js); a JSON trace's
// nested lists are flattened once, by flattenRouting.

// A JSON trace's nested routing lists -> the flat arrays, shapes checked on the way
// ([n_tokens][n_moe_layers][k], probs [..][n_expert]), then validateRouting.
export function flattenRouting(trace) {
  const r = trace.routing;
  if (!isObject(r)) throw new TraceError("trace has no 'routing' object");
  const m = trace.model, n = trace.tokens.length, L = m.moe_layers.length, K = routingK(m, trace.settings), E = m.n_expert;
  for (const name of ["expert_ids", "weights"]) if (!(name in r)) throw new TraceError(`routing.${name} is missing`);
  const flat = {
    expert_ids: flatten("routing.expert_ids", r.expert_ids, n, L, K, Int32Array,
      (v) => (!Number.isInteger(v) ? " must be an integer" : v < 0 || v >= E ? ` = ${v} is outside [0, ${E})` : null)),
    weights: flatten("routing.weights", r.weights, n, L, K, Float32Array, notFinite),
    probs: r.probs !== undefined && r.probs !== null ? flatten("routing.probs", r.probs, n, L, E, Float32Array, notFinite) : null,
  };
  const out = { ...trace, routing: flat };
  const c = trace.candidates;
  if (c !== undefined && c !== null) {
    if (!isObject(c) || !("ids" in c) || !("probs" in c)) throw new TraceError("candidates must be an object with 'ids' and 'probs'");
    const N = Array.isArray(c.ids) && c.ids.length ? (Array.isArray(c.ids[0]) ? c.ids[0].length : -1) : (trace.settings || {}).candidates || 0;
    const rows = (name, a, Type, bad) => flatten2(name, a, n, N, Type, bad);
    out.candidates = {
      N, texts: isObject(c.texts) ? c.texts : null,
      ids: rows("candidates.ids", c.ids, Int32Array, (v) => (Number.isInteger(v) ? null : " must be an integer")),
      probs: rows("candidates.probs", c.probs, Float32Array, notFinite),
    };
  }
  validateRouting(out);
  return out;
}

// Flat routing: lengths against the header, expert ids in [0, n_expert), finite
// weights and probabilities. Errors name the entry as [t][l][k].
export function validateRouting(trace) {
  const r = trace.routing;
  if (!isObject(r)) throw new TraceError("trace has no 'routing' object");
  const m = trace.model, n = trace.tokens.length, L = m.moe_layers.length, K = routingK(m, trace.settings), E = m.n_expert;
  const ids = r.expert_ids, w = r.weights, p = r.probs;
  checkLength("routing.expert_ids", ids, n, L, K);
  checkLength("routing.weights", w, n, L, K);
  if (p) checkLength("routing.probs", p, n, L, E);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (v < 0 || v >= E) throw new TraceError(`routing.expert_ids${at(i, L, K)} = ${v} is outside [0, ${E})`);
  }
  const bad = firstNotFinite(w);
  if (bad >= 0) throw new TraceError(`routing.weights${at(bad, L, K)} is not a finite number`);
  const badP = p ? firstNotFinite(p) : -1;
  if (badP >= 0) throw new TraceError(`routing.probs${at(badP, L, E)} is not a finite number`);
  const mask = (trace.settings && trace.settings.mask) || [];
  if (mask.length) {
    const banned = new Uint8Array(L * E);
    for (const [layer, e] of mask) banned[m.moe_layers.indexOf(layer) * E + e] = 1;
    for (let i = 0; i < ids.length; i++) {
      const l = Math.floor(i / K) % L;
      if (banned[l * E + ids[i]]) {
        throw new TraceError(`routing.expert_ids${at(i, L, K)} = ${ids[i]} is masked (settings.mask has [${m.moe_layers[l]}, ${ids[i]}])`);
      }
    }
  }
  if (trace.candidates) validateCandidates(trace.candidates, n, m);
}

// candidates {N, ids, probs, texts}: [n_tokens][N], distinct ids in the vocabulary,
// probabilities in [0, 1], a text for every id where texts are given
function validateCandidates(c, n, m) {
  const { N, ids, probs } = c, V = Number.isInteger(m.n_vocab) && m.n_vocab > 0 ? m.n_vocab : 2 ** 31 - 1;
  if (!(N >= 1) || !ArrayBuffer.isView(ids) || !ArrayBuffer.isView(probs) || ids.length !== n * N || probs.length !== n * N) {
    throw new TraceError(`candidates.ids and candidates.probs must both be [${n}, N] [n_tokens][N], N >= 1`);
  }
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= V) throw new TraceError(`candidates.ids[${Math.floor(i / N)}][${i % N}] = ${ids[i]} is outside [0, ${V})`);
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) throw new TraceError(`candidates.probs[${Math.floor(i / N)}][${i % N}] = ${p} is not a probability`);
    if (c.texts && !(String(ids[i]) in c.texts)) throw new TraceError(`candidates.texts has no text for candidate token ${ids[i]}`);
  }
  for (let t = 0; t < n; t++) {
    const row = new Set(ids.subarray(t * N, (t + 1) * N));
    if (row.size !== N) throw new TraceError(`candidates.ids[${t}] lists a token twice`);
  }
}

const notFinite = (v) => (typeof v === "number" && Number.isFinite(v) ? null : " is not a finite number");
const at = (i, L, K) => `[${Math.floor(i / (L * K))}][${Math.floor(i / K) % L}][${i % K}]`;
const expected = (n, L, K) => `expected [${n}, ${L}, ${K}] [n_tokens][n_moe_layers][k or n_expert]`;

function checkLength(name, a, n, L, K) {
  if (!ArrayBuffer.isView(a) || a.length !== n * L * K) {
    throw new TraceError(`${name} holds ${a && a.length} values, ${expected(n, L, K)}`);
  }
}

// index of the first NaN or infinity, or -1 (x - x is 0 exactly for finite x)
function firstNotFinite(a) {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}

// nested [n][N] lists (candidates) -> Type[n*N]
function flatten2(name, a, n, N, Type, bad) {
  const exp = `expected [${n}, N] [n_tokens][N]`;
  if (!Array.isArray(a) || a.length !== n) throw new TraceError(`${name} has ${Array.isArray(a) ? a.length : "no"} rows, ${exp}`);
  const out = new Type(n * N);
  for (let t = 0, o = 0; t < n; t++) {
    const row = a[t];
    if (!Array.isArray(row) || row.length !== N) throw new TraceError(`${name}[${t}] has the wrong shape, ${exp}`);
    for (let j = 0; j < N; j++) {
      const why = bad(row[j]);
      if (why) throw new TraceError(`${name}[${t}][${j}]${why}`);
      out[o++] = row[j];
    }
  }
  return out;
}

// nested [n][L][K] lists -> Type[n*L*K]; bad(value) -> null when the value is fine,
// else what is wrong with it
function flatten(name, a, n, L, K, Type, bad) {
  const exp = expected(n, L, K);
  if (!Array.isArray(a) || a.length !== n) throw new TraceError(`${name} has ${Array.isArray(a) ? a.length : "no"} rows, ${exp}`);
  const out = new Type(n * L * K);
  let o = 0;
  for (let t = 0; t < n; t++) {
    const at = a[t];
    if (!Array.isArray(at) || at.length !== L) throw new TraceError(`${name}[${t}] has the wrong shape, ${exp}`);
    for (let l = 0; l < L; l++) {
      const atl = at[l];
      if (!Array.isArray(atl) || atl.length !== K) throw new TraceError(`${name}[${t}][${l}] has the wrong shape, ${exp}`);
      for (let k = 0; k < K; k++) {
        const v = atl[k], why = bad(v);
        if (why) throw new TraceError(`${name}[${t}][${l}][${k}]${why}`);
        out[o++] = v;
      }
    }
  }
  return out;
}
