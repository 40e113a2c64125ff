// Routing figures of docs/analysis.md over a selection of tokens: pure functions over
// the RunState's typed arrays, no DOM. Every figure follows moeviz/analysis/*.py
// (same definitions, same names), so the page's numbers equal `moeviz stats` on the
// same tokens; undefined values are NaN here and null in figures() (like to_json).
//
// A selection `sel` is a contiguous run of token rows [lo, hi) of the state's arrays:
//   { ids, weights, tokens, lo, hi, n, L, E, K }
// ids/weights laid out [token][MoE layer][k] (router probabilities: state.probsOf(t)).
// Layer arguments are MoE rows (0..L-1); callers name them by model layer index.

import { dormantOf } from "../figures.js";

export const TOP_SHARE_FRACTION = 0.10;

// counts[l*E+e]: tokens whose top-k at row l includes e; first[l*E+e]: selection row
// of the first such token (-1: never).
export function tally(sel) {
  const { ids, lo, n, L, E, K } = sel;
  const counts = new Int32Array(L * E), first = new Int32Array(L * E).fill(-1);
  for (let i = 0; i < n; i++) {
    let o = (lo + i) * L * K;
    for (let l = 0; l < L; l++) {
      const base = l * E;
      for (let k = 0; k < K; k++) {
        const c = base + ids[o++];
        if (counts[c]++ === 0) first[c] = i;
      }
    }
  }
  return { counts, first };
}

// top1[i*L+l]: the selected expert with the largest gate weight (the first one on a tie).
export function top1Of(sel) {
  const { ids, weights, lo, n, L, K } = sel;
  const out = new Int32Array(n * L);
  for (let i = 0, j = 0; i < n; i++) {
    let o = (lo + i) * L * K;
    for (let l = 0; l < L; l++, j++, o += K) {
      let best = weights[o], e = ids[o];
      for (let k = 1; k < K; k++) if (weights[o + k] > best) { best = weights[o + k]; e = ids[o + k]; }
      out[j] = e;
    }
  }
  return out;
}

export function top1Counts(top1, n, L, E) {
  const c = new Int32Array(L * E);
  for (let j = 0; j < n * L; j++) c[(j % L) * E + top1[j]]++;
  return c;
}

// Load-balance figures per layer (balance.py balance_metrics).
export function balance(counts, L, E, K) {
  const out = { cv: [], normalized_entropy: [], max_violation: [], jain_index: [], gini: [], top_share: [],
    cv_random: [] };
  const nTop = Math.max(1, Math.ceil(TOP_SHARE_FRACTION * E));
  const p = K / E, sorted = new Float64Array(E);
  for (let l = 0; l < L; l++) {
    const row = counts.subarray(l * E, (l + 1) * E);
    let total = 0, max = 0, sq = 0;
    for (let e = 0; e < E; e++) { total += row[e]; if (row[e] > max) max = row[e]; sq += row[e] * row[e]; }
    const mean = total / E;
    let dev = 0, h = 0;
    for (let e = 0; e < E; e++) {
      const d = row[e] - mean;
      dev += d * d;
      if (row[e] > 0) { const q = row[e] / total; h += q * Math.log(q); }
    }
    for (let e = 0; e < E; e++) sorted[e] = row[e];
    sorted.sort();
    let g = 0, top = 0;
    for (let e = 0; e < E; e++) g += (2 * (e + 1) - E - 1) * sorted[e];
    for (let e = E - nTop; e < E; e++) top += sorted[e];
    out.cv.push(Math.sqrt(dev / E) / mean);
    out.normalized_entropy.push(E > 1 ? -h / Math.log(E) : NaN);
    out.max_violation.push((max - mean) / mean);
    out.jain_index.push((total * total) / (E * sq));
    out.gini.push(g / (E * total));
    out.top_share.push(top / total);
    out.cv_random.push(p < 1 ? Math.sqrt((1 - p) / ((total / K) * p)) : 0);
  }
  out.top_share_experts = nTop;
  out.ideal = { cv: 0, normalized_entropy: 1, max_violation: 0, jain_index: 1, gini: 0, top_share: nTop / E };
  return out;
}

// balance.py dormant_experts, from the page's one dormant count (figures.js).
export function dormant(counts, L, E, K, n) {
  const d = dormantOf(counts, L, E, { experts: true });
  return { per_layer: d.experts, count: d.perLayer, fraction: d.perLayer.map((c) => c / E), total: d.total,
    total_fraction: d.fraction, uniform_expected_fraction: (1 - K / E) ** n };
}

// About `points` integers in [1, n], log-spaced, increasing, ending at n: numpy's
// unique(round(geomspace(1, n, points))) computed the way numpy does it.
export function tokenGrid(n, points = 64) {
  if (n <= points) return Array.from({ length: n }, (_, i) => i + 1);
  const stop = Math.log10(n), step = stop / (points - 1), out = [];
  for (let i = 0; i < points; i++) {
    const v = i === 0 ? 1 : i === points - 1 ? n : 10 ** (i * step);
    const r = roundHalfEven(v);
    if (!out.length || r > out[out.length - 1]) out.push(r);
  }
  if (out[out.length - 1] !== n) out.push(n);
  return out;
}

function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// Dormant fraction of (layer, expert) pairs after the first t tokens, against (1 - k/E)^t.
export function saturation(first, n, L, E, K, { points = 64, perLayer = false } = {}) {
  const t = tokenGrid(n, points);
  // firstAt[i]: pairs whose first use is at selection row i
  const firstAt = new Int32Array(n + 1), byLayer = perLayer ? new Int32Array(L * (n + 1)) : null;
  for (let c = 0; c < L * E; c++) {
    if (first[c] < 0) continue;
    firstAt[first[c]]++;
    if (byLayer) byLayer[Math.floor(c / E) * (n + 1) + first[c]]++;
  }
  const frac = [], seenAt = new Int32Array(L);
  let seen = 0, row = 0;
  const per = perLayer ? Array.from({ length: L }, () => []) : null;
  for (const tt of t) {
    for (; row < tt; row++) {
      seen += firstAt[row];
      if (byLayer) for (let l = 0; l < L; l++) seenAt[l] += byLayer[l * (n + 1) + row];
    }
    frac.push(1 - seen / (L * E));
    if (per) for (let l = 0; l < L; l++) per[l].push(1 - seenAt[l] / E);
  }
  const out = { tokens: t, dormant_fraction: frac, uniform_expected: t.map((x) => (1 - K / E) ** x) };
  if (per) out.per_layer = per;
  return out;
}

// Text of each token id as it appears in the selection: the first non-empty one.
export function tokenTexts(sel) {
  const texts = new Map();
  for (let t = sel.lo; t < sel.hi; t++) {
    const { id, text } = sel.tokens[t];
    if (!texts.get(id)) texts.set(id, text);
  }
  return texts;
}

// The tokens most often routed to `expert` (in its top-k) at MoE row `row` (tokens.py).
export function expertTokenProfile(sel, row, expert, { top = 20, layer = row, texts = null } = {}) {
  const { ids, tokens, lo, n, L, K } = sel;
  const here = new Map(), overall = new Map();
  let routed = 0;
  for (let i = 0; i < n; i++) {
    const id = tokens[lo + i].id;
    overall.set(id, (overall.get(id) || 0) + 1);
    const o = ((lo + i) * L + row) * K;
    for (let k = 0; k < K; k++) {
      if (ids[o + k] === expert) { routed++; here.set(id, (here.get(id) || 0) + 1); break; }
    }
  }
  const result = { layer, expert, tokens_routed: routed, tokens_total: n, share_of_tokens: routed / n, top: [] };
  if (routed === 0) { result.note = "dormant: no selected token was routed to this expert"; return result; }
  const names = texts || tokenTexts(sel);
  const order = [...here.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, top);
  for (const [id, count] of order) {
    const occ = overall.get(id);
    result.top.push({ id, text: names.get(id) || "", count, occurrences: occ, routed_share: count / occ,
      lift: (count / routed) / (occ / n) });
  }
  return result;
}

// numpy's 'linear' quantile of an ascending array (its lerp, for equal results).
export function quantileSorted(v, q) {
  const n = v.length;
  if (!n) return NaN;
  const idx = q * (n - 1), lo = Math.floor(idx), hi = Math.min(lo + 1, n - 1), t = idx - lo;
  const a = v[lo], b = v[hi], d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

// NaN -> null, typed arrays -> plain arrays, recursively (moeviz.analysis.to_json).
export function toJSON(value) {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (ArrayBuffer.isView(value)) return Array.from(value, toJSON);
  if (Array.isArray(value)) return value.map(toJSON);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJSON(v);
    return out;
  }
  return value;
}
