// Router confidence (moeviz/analysis/confidence.py) from the full router scores a run
// captures with "router probabilities" (--probs). Pure functions, no DOM.
//
// Per (token, MoE layer), from that token's scores only: the top-1 score, the margin
// between the k-th and (k+1)-th largest scores, and the entropy of the scores
// normalized to sum 1, divided by ln E. Those values depend on the token alone, so
// ConfidenceCache computes each token once per run and every selection (a phase, the
// playback cursor) only summarizes the cached values.
import { quantileSorted } from "./metrics.js";

export const QUANTILES = [0.1, 0.5, 0.9];
export const PROBABILITY_GATINGS = ["softmax", "softmax_weight"];

export class ConfidenceCache {
  constructor() { this.key = null; }

  // Per-token values for the tokens [0, upTo) of the state (NaN for a token without
  // scores; callers check that every selected token has them).
  fill(state, upTo) {
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
    const m = Math.min(K + 1, E), top = new Float64Array(m), logE = Math.log(E);
    for (let t = this.done; t < upTo; t++) {
      const p = state.probs[t];
      for (let l = 0; l < L; l++) {
        const j = t * L + l;
        if (!p) { this.top1[j] = this.margin[j] = this.entropy[j] = NaN; continue; }
        const o = l * E;
        // the m largest scores, largest first (insertion into a short sorted list)
        let filled = 0, total = 0;
        for (let e = 0; e < E; e++) {
          const v = p[o + e];
          total += v;
          if (filled === m && v <= top[m - 1]) continue;
          let i = filled < m ? filled++ : m - 1;
          while (i > 0 && top[i - 1] < v) { top[i] = top[i - 1]; i--; }
          top[i] = v;
        }
        this.top1[j] = top[0];
        // Python stores the margin in a float32 array
        this.margin[j] = K < E ? Math.fround(top[K - 1] - top[K]) : NaN;
        let h = NaN;
        if (total > 0) {
          h = 0;
          for (let e = 0; e < E; e++) { const q = p[o + e] / total; if (q > 0) h -= q * Math.log(q); }
          h = E > 1 ? h / logE : 0;
        }
        this.entropy[j] = h;
      }
    }
    this.done = upTo;
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
