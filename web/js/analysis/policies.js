// Expert cache policies side by side for one budget (issue 25; moeviz/analysis/cache_plan.py
// has the definitions and `moeviz cache-plan` the held-out version). Over the selected
// tokens, one cache of N experts per MoE layer, starting empty; a token's k experts are
// accessed together and each miss evicts a cached expert the token does not use:
//   lru     least recently used (the first-selected of a token counts as the most recent)
//   lfu     least often used so far, ties to the least recently used
//   lrfu    LRFU scores (each use adds 1, halving every 1/lambda tokens); lambda from
//           LAMBDAS, the best on these same tokens (hindsight, as the page has no held-out run)
//   static  the N most selected experts of these tokens (hindsight), never changed
//   belady  after each token keep the N experts of cache + token used soonest, starting
//           from the N used soonest: the bound no policy beats
// PolicyTable is the expert-cache tab's row of them, with its budget input.
import { el, table, pct } from "./draw.js";

export const LAMBDAS = [0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1];
export const POLICY_NAMES = { lru: "LRU", lfu: "LFU", lrfu: "LRFU (adaptive)", static: "static (hottest, hindsight)",
  belady: "Belady (offline bound)" };

// hits [L] of lru / lfu / lrfu over rows [lo, hi) of ids ([token][layer][k] flat)
export function simulate(sel, N, policy, lam = 0) {
  const { ids, lo, hi, L, E, K } = sel, hits = new Float64Array(L);
  for (let l = 0; l < L; l++) {
    const cached = new Uint8Array(E), stamp = new Float64Array(E).fill(-1), count = new Float64Array(E);
    const crf = new Float64Array(E).fill(-Infinity), mark = new Int32Array(E).fill(-1);
    let size = 0;
    for (let t = lo; t < hi; t++) {
      const o = (t * L + l) * K, rel = t - lo;
      for (let k = 0; k < K; k++) {
        const e = ids[o + k];
        if (cached[e]) hits[l]++;
        mark[e] = t;
        stamp[e] = rel * K + (K - 1 - k);
        count[e]++;
        const a = crf[e], b = lam * rel, m = Math.max(a, b);     // log2(2^a + 2^b)
        crf[e] = m + Math.log2(Math.pow(2, a - m) + Math.pow(2, b - m));
      }
      for (let k = 0; k < K; k++) { const e = ids[o + k]; if (!cached[e]) { cached[e] = 1; size++; } }
      while (size > N) {
        let worst = -1;
        for (let e = 0; e < E; e++) {
          if (!cached[e] || mark[e] === t) continue;
          if (worst < 0 || before(policy, e, worst, stamp, count, crf)) worst = e;
        }
        cached[worst] = 0;
        size--;
      }
    }
  }
  return hits;
}

function before(policy, a, b, stamp, count, crf) {        // a is evicted before b
  if (policy === "lfu" && count[a] !== count[b]) return count[a] < count[b];
  if (policy === "lrfu" && crf[a] !== crf[b]) return crf[a] < crf[b];
  return stamp[a] < stamp[b];
}

export function belady(sel, N) {
  const { ids, lo, hi, L, E, K } = sel, hits = new Float64Array(L);
  for (let l = 0; l < L; l++) {
    // next[t][k]: the next row (from t + 1) using the same expert; soon[e]: e's next use from the current row
    const n = hi - lo, next = new Int32Array(n * K), soon = new Int32Array(E).fill(n);
    for (let t = hi - 1; t >= lo; t--) {
      const o = (t * L + l) * K;
      for (let k = 0; k < K; k++) { const e = ids[o + k]; next[(t - lo) * K + k] = soon[e]; soon[e] = t - lo; }
    }
    const cached = new Uint8Array(E);
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => soon[a] - soon[b] || a - b);
    for (let i = 0; i < Math.min(N, E); i++) cached[order[i]] = 1;
    let size = Math.min(N, E);
    for (let t = lo; t < hi; t++) {
      const o = (t * L + l) * K;
      for (let k = 0; k < K; k++) {
        const e = ids[o + k];
        if (cached[e]) hits[l]++;
        soon[e] = next[(t - lo) * K + k];
      }
      for (let k = 0; k < K; k++) { const e = ids[o + k]; if (!cached[e]) { cached[e] = 1; size++; } }
      while (size > N) {          // drop the one used last (never again first), ties to the higher id
        let worst = -1;
        for (let e = 0; e < E; e++) if (cached[e] && (worst < 0 || soon[e] >= soon[worst])) worst = e;
        cached[worst] = 0;
        size--;
      }
    }
  }
  return hits;
}

export function staticHits(sel, N) {
  const { ids, lo, hi, L, E, K } = sel, hits = new Float64Array(L);
  for (let l = 0; l < L; l++) {
    const counts = new Float64Array(E);
    for (let t = lo; t < hi; t++) for (let k = 0; k < K; k++) counts[ids[(t * L + l) * K + k]]++;
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => counts[b] - counts[a] || a - b);
    for (let i = 0; i < Math.min(N, E); i++) hits[l] += counts[order[i]];
  }
  return hits;
}

// {budget, lambda, policies: {name: {hit_rate, per_layer}}} over the selection
export function cachePolicies(sel, budget) {
  const { n, L, K } = sel, N = Math.max(K, Math.min(budget, sel.E)), uses = n * K;
  let lam = LAMBDAS[0], best = -1;
  for (const x of LAMBDAS) {
    const h = simulate(sel, N, "lrfu", x).reduce((a, b) => a + b, 0);
    if (h > best) { best = h; lam = x; }
  }
  const raw = { lru: simulate(sel, N, "lru"), lfu: simulate(sel, N, "lfu"), lrfu: simulate(sel, N, "lrfu", lam),
    static: staticHits(sel, N), belady: belady(sel, N) };
  const policies = {};
  for (const [name, h] of Object.entries(raw)) {
    policies[name] = { hit_rate: h.reduce((a, b) => a + b, 0) / (uses * L), per_layer: Array.from(h, (x) => x / uses) };
  }
  return { budget: N, lambda: lam, policies };
}

// The cache tab's policy table: a budget input and one row per policy.
export class PolicyTable {
  constructor(root, selection) {
    this.selection = selection;          // () => the tab's current selection (Analyzer.selection)
    this.budget = null;
    this.shown = "";
    this.input = el("input", { type: "number", min: "1", step: "1", className: "an-budget", ariaLabel: "cache budget" });
    this.input.addEventListener("change", () => { this.budget = Number(this.input.value); this.shown = ""; });
    this.box = el("div", { className: "an-scroll an-policies", tabIndex: 0 });
    root.append(el("p", { className: "an-line" }, "Policies side by side, ", this.input,
      " experts cached per layer (from empty; moeviz cache-plan scores them on held-out runs):"), this.box);
  }

  render(fig) {
    if (!fig.tokens) return;
    const E = fig.n_expert, K = fig.k;
    if (this.budget === null || this.budget < K || this.budget > E) this.budget = Math.min(E, Math.max(K, Math.round(E / 4)));
    this.input.min = String(K);
    this.input.max = String(E);
    if (document.activeElement !== this.input) this.input.value = String(this.budget);
    const key = `${fig.range}|${fig.applied}|${this.budget}|${E}|${K}`;
    if (key === this.shown) return;
    this.shown = key;
    const sel = this.selection(fig.selection);
    const r = cachePolicies(sel, this.budget);
    this.figures = r;
    this.box.dataset.tokens = String(sel.n);   // the tokens the rates are over (tests wait for a selection's)
    const rows = Object.entries(r.policies).map(([name, p]) => {
      const cell = el("td", { dataset: { policy: name, hitRate: String(p.hit_rate) } }, pct(p.hit_rate));
      return [name === "lrfu" ? `${POLICY_NAMES[name]}, λ ${r.lambda}` : POLICY_NAMES[name], cell,
        p.per_layer.map((x) => Math.round(100 * x)).join(" ")];
    });
    this.box.replaceChildren(table(["policy", `hit rate (${r.budget} of ${E})`, "per MoE layer, %"], rows));
  }
}
