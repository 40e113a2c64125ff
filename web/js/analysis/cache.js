// Expert cache simulation (moeviz/analysis/expert_cache.py): what a cache of C experts
// per MoE layer would hit when the experts live in CPU memory. Pure functions.
//
// LRU at token granularity, one cache per MoE layer: before token t runs a layer the
// cache holds the C most recently used experts; the token's selected experts found
// there are hits, the others are loaded. Within a token the first-selected expert
// counts as the most recent. A use hits exactly when its stack distance (distinct
// experts more recent than it) is below C, so one pass gives every C: here the pass
// keeps the recency stack itself (experts, most recent first) and a use's distance
// is its expert's position in the stack before the token. First uses are misses for
// any C (compulsory). Next to it the static "hottest C experts" set, chosen with
// hindsight from the same tokens: hit rate = (C largest counts) / (n k).

// Per-access stack distances depend only on the tokens from the selection's first row
// on, so they are kept: StackDistances holds, for one first row `lo`, each layer's
// recency stack after the rows done so far and the distance of every use (E = first
// use). A later cursor only simulates the new rows; an earlier one, or another end,
// only re-counts the kept distances.
export class StackDistances {
  constructor(lo, L, E, K) {
    Object.assign(this, { lo, L, E, K, done: lo });
    this.stack = new Int32Array(L * E);
    this.pos = new Int32Array(L * E).fill(-1);
    this.stamp = new Int32Array(L * E).fill(-1);
    this.len = new Int32Array(L);
    this.dist = new Uint16Array(0);
  }

  // Simulate rows [done, hi) of ids ([token][layer][k]).
  advance(ids, hi) {
    const { lo, L, E, K, done } = this;
    if (hi <= done) return;
    if (this.dist.length < (hi - lo) * L * K) {
      const d = new Uint16Array(Math.max(hi - lo, 2 * (done - lo), 64) * L * K);
      d.set(this.dist);
      this.dist = d;
    }
    const dist = this.dist, per = L * K;
    for (let l = 0; l < L; l++) {
      const stack = this.stack.subarray(l * E, (l + 1) * E), pos = this.pos.subarray(l * E, (l + 1) * E);
      const stamp = this.stamp.subarray(l * E, (l + 1) * E);
      let len = this.len[l];
      for (let t = done; t < hi; t++) {
        const o = (t * L + l) * K, out = (t - lo) * per + l * K;
        let deepest = -1, fresh = 0;
        for (let k = 0; k < K; k++) {
          const e = ids[o + k], d = pos[e];
          stamp[e] = t;
          if (d < 0) { dist[out + k] = E; fresh++; } else { dist[out + k] = d; if (d > deepest) deepest = d; }
        }
        // Move the token's experts to the front, first-selected first. Entries after
        // the deepest one used stay where they are unless new experts join the stack.
        const end = fresh ? len - 1 : deepest;
        let w = end + fresh;
        for (let r = end; r >= 0; r--) {
          const e = stack[r];
          if (stamp[e] !== t) { stack[w] = e; pos[e] = w; w--; }
        }
        for (let k = 0; k < K; k++) { const e = ids[o + k]; stack[k] = e; pos[e] = k; }
        len += fresh;
      }
      this.len[l] = len;
    }
    this.done = hi;
  }

  // hist[l*(E+1)+d]: uses of rows [lo, hi) at layer l with stack distance d (d = E: first use).
  histogram(hi) {
    const { lo, L, E, K } = this, hist = new Int32Array(L * (E + 1)), dist = this.dist;
    for (let t = lo, o = 0; t < hi; t++) {
      for (let l = 0; l < L; l++) {
        const h = l * (E + 1);
        for (let k = 0; k < K; k++) hist[h + dist[o++]]++;
      }
    }
    return hist;
  }
}

// The kept simulations of a run, one per selection start (all/prompt start at 0).
export class StackDistanceCache {
  constructor() { this.gen = null; this.byStart = new Map(); }

  // The simulation from row lo, advanced to row hi.
  advance(state, lo, hi) {
    if (this.gen !== state.gen) { this.gen = state.gen; this.byStart.clear(); }
    let sd = this.byStart.get(lo);
    if (!sd || sd.L !== state.L || sd.E !== state.E || sd.K !== state.K) {
      sd = new StackDistances(lo, state.L, state.E, state.K);
      this.byStart.set(lo, sd);
    }
    sd.advance(state.ids, hi);
    return sd;
  }

  histogram(state, lo, hi) { return this.advance(state, lo, hi).histogram(hi); }

  // How far the simulation from row lo has got (lo when not started).
  done(state, lo) {
    const sd = this.gen === state.gen ? this.byStart.get(lo) : null;
    return sd ? sd.done : lo;
  }
}

// One-shot: the histogram of a selection.
export function stackDistances(sel) {
  const sd = new StackDistances(sel.lo, sel.L, sel.E, sel.K);
  sd.advance(sel.ids, sel.hi);
  return sd.histogram(sel.hi);
}

// Hit rates for C = 1..E per layer and over all layers (every layer has n k uses).
export function cacheHitRates(hist, counts, L, E) {
  const lru = [], stat = [], lruHits = new Float64Array(E), statHits = new Float64Array(E);
  let accesses = 0, compulsory = 0;
  const sorted = new Float64Array(E);
  for (let l = 0; l < L; l++) {
    const h = l * (E + 1);
    let uses = 0;
    for (let d = 0; d <= E; d++) uses += hist[h + d];
    accesses += uses;
    compulsory += hist[h + E];
    for (let e = 0; e < E; e++) sorted[e] = counts[l * E + e];
    sorted.sort().reverse();
    const rl = [], rs = [];
    let below = 0, hot = 0;
    for (let c = 1; c <= E; c++) {
      below += hist[h + c - 1];
      hot += sorted[c - 1];
      rl.push(below / uses);
      rs.push(hot / uses);
      lruHits[c - 1] += below;
      statHits[c - 1] += hot;
    }
    lru.push(rl);
    stat.push(rs);
  }
  const stackHist = [];
  for (let l = 0; l < L; l++) stackHist.push(Array.from(hist.subarray(l * (E + 1), (l + 1) * (E + 1))));
  return {
    capacities: Array.from({ length: E }, (_, i) => i + 1), lru, static: stat,
    lru_overall: Array.from(lruHits, (x) => x / accesses), static_overall: Array.from(statHits, (x) => x / accesses),
    compulsory_miss: compulsory / accesses, stack_distance_histogram: stackHist,
  };
}
