// Comparing runs of one model: the figures of moeviz/analysis/compare.py, in the page.
//   used set of a run   experts selected at least once (at a MoE layer) over all its tokens
//   Jaccard, per layer  |A ∩ B| / |A ∪ B| of two runs' used sets; null when both sets
//                       are empty (0/0), and a mean over layers skips those
//   dormant in all      experts in no run's used set
// With more than two runs every pair gets its per-layer Jaccard; the per-layer
// figure shown is the mean over pairs (and a run × run matrix of the pairs' means).
// Pure data: no DOM here (compareview.js draws it).
import { dormantOf } from "./figures.js";
import { routingK } from "./tracecheck.js";

// What a run contributes to a comparison: selection counts over all its tokens.
// counts: Int32Array [n_moe_layers * n_expert], MoE row-major.
// From the page's in-memory trace (tracecheck.js: flat routing arrays).
// Each figure also keeps the run's tokens and routing (ids, K: its top-k) for the
// per-token diff of runs that share tokens (tokendiff.js).
export function figuresFromTrace(trace, name) {
  const m = trace.model, K = routingK(m, trace.settings);
  return { name, model: m, nTokens: trace.tokens.length,
    counts: countSelections(trace.routing.expert_ids, trace.tokens.length, m.moe_layers.length, m.n_expert, K),
    tokens: trace.tokens, ids: trace.routing.expert_ids, K, settings: trace.settings || {} };
}

// The same from a RunState, over every token received (not just up to the cursor).
export function figuresFromState(state, name) {
  return { name, model: state.model, nTokens: state.nTokens,
    counts: countSelections(state.ids, state.nTokens, state.L, state.E, state.K),
    tokens: state.tokens.slice(0, state.nTokens), ids: state.ids.slice(0, state.nTokens * state.L * state.K), K: state.K,
    settings: (state.run && state.run.settings) || {} };
}

// ids [n * L * K] -> counts [L * E]
function countSelections(ids, n, L, E, K) {
  const counts = new Int32Array(L * E);
  for (let t = 0, o = 0; t < n; t++) {
    for (let l = 0, base = 0; l < L; l++, base += E) for (let k = 0; k < K; k++) counts[base + ids[o++]]++;
  }
  return counts;
}

export class CompareError extends Error {}

// Expert e of one model is not expert e of another: refuse, as same_model() does.
const SAME_MODEL_FIELDS = ["name", "architecture", "n_layer", "moe_layers", "n_expert", "n_expert_used"];

export function checkSameModel(runs) {
  const first = runs[0];
  for (const r of runs.slice(1)) {
    for (const f of SAME_MODEL_FIELDS) {
      const a = JSON.stringify(first.model[f]), b = JSON.stringify(r.model[f]);
      if (a !== b) {
        throw new CompareError(`cannot compare runs of different models: ${first.name} has ${f} ${a}, ${r.name} has ${b}`);
      }
    }
  }
}

export function compareRuns(runs) {
  if (runs.length < 2) throw new CompareError("comparing needs at least two runs");
  checkSameModel(runs);
  const m = runs[0].model, L = m.moe_layers.length, E = m.n_expert;
  const used = runs.map((r) => Uint8Array.from(r.counts, (c) => (c > 0 ? 1 : 0)));
  const perRun = runs.map((r) => {
    const d = dormantOf(r.counts, L, E);
    return { name: r.name, tokens: r.nTokens, usedPerLayer: d.perLayer.map((n) => E - n), dormantPerLayer: d.perLayer,
      dormant: d.total, dormantFraction: d.fraction };
  });
  const pairs = [];
  for (let a = 0; a < runs.length; a++) {
    for (let b = a + 1; b < runs.length; b++) {
      const jaccard = Array.from({ length: L }, (_, l) => {
        let inter = 0, union = 0;
        for (let c = l * E; c < (l + 1) * E; c++) { inter += used[a][c] & used[b][c]; union += used[a][c] | used[b][c]; }
        return union > 0 ? inter / union : null;
      });
      pairs.push({ runs: [a, b], names: [runs[a].name, runs[b].name], jaccard, meanJaccard: mean(jaccard) });
    }
  }
  const jaccard = Array.from({ length: L }, (_, l) => (pairs.length === 1 ? pairs[0].jaccard[l] : mean(pairs.map((p) => p.jaccard[l]))));
  const matrix = runs.map((_, a) => runs.map((__, b) => {
    if (a === b) return 1;
    const p = pairs.find((q) => q.runs[0] === Math.min(a, b) && q.runs[1] === Math.max(a, b));
    return p.meanJaccard;
  }));
  // dormant in all: dormant in the runs' summed counts
  const all = new Float64Array(L * E);
  for (const r of runs) for (let c = 0; c < L * E; c++) all[c] += r.counts[c];
  const d = dormantOf(all, L, E, { experts: true });
  return {
    runs: perRun, moeLayers: m.moe_layers.slice(), nExpert: E, pairs, jaccard, meanJaccard: mean(jaccard), matrix,
    dormantInAll: { perLayer: d.perLayer, experts: d.experts, total: d.total, fraction: d.fraction },
  };
}

// Delta of two runs: selections per token (count / n_tokens, in [0, 1]) of A minus
// B's, per MoE layer and expert, so runs of different lengths compare fairly.
export function deltaOf(a, b) {
  const n = a.counts.length, values = new Float64Array(n);
  const na = a.nTokens || 1, nb = b.nTokens || 1;
  let max = 0;
  for (let c = 0; c < n; c++) {
    values[c] = a.counts[c] / na - b.counts[c] / nb;
    max = Math.max(max, Math.abs(values[c]));
  }
  return { a: a.name, b: b.name, values, max };
}

function mean(xs) {
  const v = xs.filter((x) => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}
