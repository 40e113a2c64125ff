// Router confidence (moeviz/analysis/confidence.py) from the full router scores a run
// captures with "router probabilities" (--probs). Pure functions, no DOM.
//
// Per (token, MoE layer), from that token's scores only: the top-1 score, the margin
// between the k-th and (k+1)-th largest scores, and the entropy of the scores
// normalized to sum 1, divided by ln E. Those values depend on the token alone, so
// ConfidenceCache computes each token once per run and every selection (prompt or generated
// tokens, the playback cursor) only summarizes the cached values.
import { quantileSorted } from "./metrics.js";

export const QUANTILES = [0.1, 0.5, 0.9];
export const PROBABILITY_GATINGS = ["softmax", "softmax_weight"];

// One token's scores p [L*E]: per layer its top-1 score,
// margin and normalized entropy, written at j0 + layer. One pass per layer finds the
// k+1 largest scores (insertion into a short sorted list), their total and Σ p ln p;
// the entropy of p / total is ln total − Σ p ln p / total.
function fillToken(p, j0, L, E, K, top, top1, margin, entropy) {
  const m = top.length, logE = Math.log(E);
  for (let l = 0; l < L; l++) {
    const o = l * E;
    let filled = 0, total = 0, plogp = 0, thr = -Infinity;     // thr: the m-th largest once m are in
    for (let e = 0; e < E; e++) {
      const v = p[o + e];
      total += v;
      if (v > 0) plogp += v * Math.log(v);
      if (v <= thr) continue;
      let i = filled < m ? filled++ : m - 1;
      while (i > 0 && top[i - 1] < v) { top[i] = top[i - 1]; i--; }
      top[i] = v;
      if (filled === m) thr = top[m - 1];
    }
    top1[j0 + l] = top[0];
    margin[j0 + l] = K < E ? Math.fround(top[K - 1] - top[K]) : NaN;    // Python keeps margins as float32
    entropy[j0 + l] = total > 0 ? (E > 1 ? (Math.log(total) - plogp / total) / logE : 0) : NaN;
  }
}

export class ConfidenceCache {
  constructor() { this.key = null; }

  // Per-token values for the tokens [0, upTo) of the state (NaN for a token without
  // scores; callers check that every selected token has them). With a deadline
  // (performance.now() time) it may stop early: `done` says how far it got.
  fill(state, upTo, deadline = Infinity) {
    const { L, E, K } = state;
    if (this.key !== state.gen || !this.top1 || this.L !== L) {
      Object.assign(this, { key: state.gen, L, E, K, done: 0, top1: new Float64Array(0),
        margin: new Float64Array(0), entropy: new Float64Array(0) });
    }
    if (upTo <= this.done) return;
    if (this.top1.length < upTo * L) {
      const cap = Math.max(upTo, 2 * this.done, 64) * L;
      for (const f of ["top1", "margin", "entropy"]) { const a = new Float64Array(cap); a.set(this[f]); this[f] = a; }
    }
    const top = new Float64Array(Math.min(K + 1, E));
    for (let t = this.done; t < upTo; t++) {
      const p = state.probsOf(t);
      if (p) fillToken(p, t * L, L, E, K, top, this.top1, this.margin, this.entropy);
      else for (let j = t * L; j < (t + 1) * L; j++) this.top1[j] = this.margin[j] = this.entropy[j] = NaN;
      this.done = t + 1;
      if ((t & 7) === 7 && performance.now() > deadline) break;
    }
  }
}

// Summaries per layer over selection rows [lo, hi) (all tokens must have scores).
export function routerConfidence(cache, lo, hi, { L, E, K, gating, layers }) {
  const summary = (arr) => {
    const out = { mean: [], overall_mean: NaN };
    for (const q of QUANTILES) out[`p${Math.round(q * 100)}`] = [];
    const col = new Float64Array(hi - lo);
    let all = 0, allN = 0;
    for (let l = 0; l < L; l++) {
      let m = 0, s = 0;
      for (let t = lo; t < hi; t++) { const v = arr[t * L + l]; if (!Number.isNaN(v)) { col[m++] = v; s += v; } }
      const v = col.subarray(0, m).sort();
      out.mean.push(m ? s / m : NaN);
      for (const q of QUANTILES) out[`p${Math.round(q * 100)}`].push(quantileSorted(v, q));
      all += s; allN += m;
    }
    out.overall_mean = allN ? all / allN : NaN;
    return out;
  };
  return {
    moe_layers: layers, gating: gating ?? null, scores_are_probabilities: PROBABILITY_GATINGS.includes(gating),
    top1: summary(cache.top1), margin: K < E ? summary(cache.margin) : null, entropy: summary(cache.entropy),
    note: K < E ? null : "k = n_expert: every expert is selected, no margin",
  };
}
