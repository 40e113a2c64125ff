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

// hist[l*(E+1)+d]: uses at row l with stack distance d; d = E counts first uses.
export function stackDistances(sel) {
  const { ids, lo, n, L, E, K } = sel;
  const hist = new Int32Array(L * (E + 1));
  const stack = new Int32Array(E), pos = new Int32Array(E), stamp = new Int32Array(E);
  for (let l = 0; l < L; l++) {
    pos.fill(-1); stamp.fill(-1);
    let len = 0;
    const h = l * (E + 1);
    for (let i = 0; i < n; i++) {
      const o = ((lo + i) * L + l) * K;
      let deepest = -1, fresh = 0;
      for (let k = 0; k < K; k++) {
        const e = ids[o + k], d = pos[e];
        stamp[e] = i;
        if (d < 0) { hist[h + E]++; fresh++; } else { hist[h + d]++; if (d > deepest) deepest = d; }
      }
      // Move the token's experts to the front, first-selected first. Entries after
      // the deepest one used stay where they are unless new experts join the stack.
      const end = fresh ? len - 1 : deepest;
      let w = end + fresh;
      for (let r = end; r >= 0; r--) {
        const e = stack[r];
        if (stamp[e] !== i) { stack[w] = e; pos[e] = w; w--; }
      }
      for (let k = 0; k < K; k++) { const e = ids[o + k]; stack[k] = e; pos[e] = k; }
      len += fresh;
    }
  }
  return hist;
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
