// Locality and token figures (moeviz/analysis/locality.py and tokens.py): consecutive
// repetition, co-activation within a layer, top-1 transitions between adjacent MoE
// layers, vocabulary specialization. Pure functions, no DOM.
//
// The exact figures equal numpy's. The simulated baselines (shuffled transitions,
// the specialization baselines) use the same number of seeded shuffles as Python,
// but this page's own generator: they agree with `moeviz stats` up to sampling noise.

// Per layer: share of consecutive pairs keeping the top-1 expert, and the mean share
// of the top-k set kept, against uniform random and shuffled-order baselines.
export function consecutive(sel, counts, top1, t1counts) {
  const { ids, lo, n, L, E, K } = sel;
  if (n < 2) {
    const none = new Array(L).fill(null);
    return { pairs: 0, top1_repeat: none, top1_repeat_uniform: 1 / E, top1_repeat_shuffled: none,
      topk_overlap: none, topk_overlap_uniform: K / E, topk_overlap_shuffled: none, note: "needs at least 2 tokens" };
  }
  const repeats = new Float64Array(L), overlap = new Float64Array(L);
  const mark = new Int32Array(L * E).fill(-2);
  for (let i = 0; i < n; i++) {
    let o = (lo + i) * L * K;
    for (let l = 0; l < L; l++) {
      const base = l * E;
      let ov = 0;
      for (let k = 0; k < K; k++) {
        const c = base + ids[o++];
        if (mark[c] === i - 1) ov++;
        mark[c] = i;
      }
      overlap[l] += ov;
      if (i > 0 && top1[i * L + l] === top1[(i - 1) * L + l]) repeats[l]++;
    }
  }
  const pairs = n - 1;
  return {
    pairs,
    top1_repeat: Array.from(repeats, (r) => r / pairs), top1_repeat_uniform: 1 / E,
    top1_repeat_shuffled: sharedByRandomPair(t1counts, L, E, n),
    topk_overlap: Array.from(overlap, (x) => x / (pairs * K)), topk_overlap_uniform: K / E,
    topk_overlap_shuffled: sharedByRandomPair(counts, L, E, n).map((x) => x / K),
  };
}

function sharedByRandomPair(counts, L, E, n) {
  const out = [];
  for (let l = 0; l < L; l++) {
    let s = 0;
    for (let e = 0; e < E; e++) { const c = counts[l * E + e]; s += c * (c - 1); }
    out.push(s / (n * (n - 1)));
  }
  return out;
}

// Within MoE row `row`: N[i*E+j] = tokens selecting both (N[i,i] = c_i) and N/N[i,i].
export function coactivation(sel, row, counts, layer = row) {
  const { ids, lo, n, L, E, K } = sel;
  const N = new Float64Array(E * E);
  for (let i = 0; i < n; i++) {
    const o = ((lo + i) * L + row) * K;
    for (let a = 0; a < K; a++) {
      const ea = ids[o + a];
      for (let b = a + 1; b < K; b++) { const eb = ids[o + b]; N[ea * E + eb]++; N[eb * E + ea]++; }
    }
  }
  for (let e = 0; e < E; e++) N[e * E + e] = counts[row * E + e];
  const conditional = new Float64Array(E * E);
  for (let a = 0; a < E; a++) {
    const d = N[a * E + a];
    for (let b = 0; b < E; b++) conditional[a * E + b] = d > 0 ? N[a * E + b] / d : NaN;
  }
  const pairs = [];
  for (let a = 0; a < E; a++) for (let b = a + 1; b < E; b++) if (N[a * E + b] > 0) pairs.push([a, b, N[a * E + b]]);
  pairs.sort((x, y) => y[2] - x[2] || x[0] - y[0] || x[1] - y[1]);
  return {
    layer, counts: N, conditional, uniform: E > 1 ? (K - 1) / (E - 1) : null,
    top_pairs: pairs.slice(0, 10).map(([a, b, t]) => ({ experts: [a, b], tokens: t,
      share_of_first: conditional[a * E + b], share_of_second: conditional[b * E + a] })),
  };
}

// [E*E] counts of top-1 a at row l with top-1 b at row l+1.
export function transitionCounts(top1, n, L, E, l) {
  const t = new Int32Array(E * E);
  for (let i = 0; i < n; i++) t[top1[i * L + l] * E + top1[i * L + l + 1]]++;
  return t;
}

export function layerTransitions(top1, n, L, E, row, layers) {
  if (row + 1 >= L) return null;
  const counts = transitionCounts(top1, n, L, E, row), conditional = new Float64Array(E * E);
  for (let a = 0; a < E; a++) {
    let s = 0;
    for (let b = 0; b < E; b++) s += counts[a * E + b];
    for (let b = 0; b < E; b++) conditional[a * E + b] = s > 0 ? counts[a * E + b] / s : NaN;
  }
  return { layer: layers[row], next_layer: layers[row + 1], counts, conditional };
}

// Plug-in mutual information (bits) and predictability of the pairing (a[i], b[i]),
// i < n, given the marginal shares pa, pb (as in locality.py's _pair_figures). Only
// the table's non-empty cells are visited (n is usually far below E * E); `table`
// and `rowMax` are left zeroed.
function pairFigures(a, b, n, E, pa, pb, scratch) {
  const { table, rowMax, cells } = scratch;
  let m = 0;
  for (let i = 0; i < n; i++) {
    const c = a[i] * E + b[i];
    if (table[c]++ === 0) cells[m++] = c;
  }
  let mi = 0, best = 0;
  for (let j = 0; j < m; j++) {
    const c = cells[j], v = table[c], x = (c / E) | 0, p = v / n;
    mi += p * Math.log2(p / (pa[x] * pb[c - x * E]));
    if (v > rowMax[x]) rowMax[x] = v;
    table[c] = 0;
  }
  for (let x = 0; x < E; x++) { best += rowMax[x]; rowMax[x] = 0; }
  return [Math.max(mi, 0), best / n];
}

// The same two figures summed over the shuffled pairings (aE[i] = a[i] * E, b[perm[i]]).
// Shuffling keeps both marginals, so with xlogx[v] = v log2 v and marginal =
// Σ_a ca log2 ca + Σ_b cb log2 cb: MI = (Σ_cells v log2 v + n log2 n − marginal) / n,
// no log per cell.
function shuffledFigures(aE, a, b, perms, n, E, xlogx, marginal, scratch) {
  const { table, rowMax, cells, cellRow } = scratch;
  let mi = 0, pred = 0;
  for (const perm of perms) {
    let m = 0;
    for (let i = 0; i < n; i++) {     // branch-free: first touches are unpredictable
      const c = aE[i] + b[perm[i]], old = table[c];
      table[c] = old + 1;
      cells[m] = c;
      cellRow[m] = a[i];
      m += (old - 1) >>> 31;          // 1 when old === 0
    }
    let s = 0, best = 0;
    for (let j = 0; j < m; j++) {
      const c = cells[j], v = table[c], x = cellRow[j];
      s += xlogx[v];
      rowMax[x] = Math.max(rowMax[x], v);
      table[c] = 0;
    }
    for (let x = 0; x < E; x++) { best += rowMax[x]; rowMax[x] = 0; }
    mi += Math.max((s + xlogx[n] - marginal) / n, 0);
    pred += best / n;
  }
  return [mi / perms.length, pred / perms.length];
}

export const SHUFFLE_DRAWS = 1 << 20;

// Per adjacent MoE row pair: MI, predictability, the guess-the-commonest baseline and
// both figures again with the next layer's top-1 shuffled across tokens (seeded; as
// many shuffles as Python, max(1, min(16, 2^20 / n))).
export function transitionSummary(top1, n, L, E, layers) {
  const out = { pairs: [], mutual_information_bits: [], predictability: [], predictability_baseline: [],
    mutual_information_shuffled: [], predictability_shuffled: [] };
  const pa = new Float64Array(E), pb = new Float64Array(E), ca = new Int32Array(E), cb = new Int32Array(E);
  const rng = mulberry32(0), S = Math.max(1, Math.min(16, Math.floor(SHUFFLE_DRAWS / n)));
  const perms = Array.from({ length: S }, () => permutation(n, rng));
  const scratch = { table: new Int32Array(E * E), rowMax: new Int32Array(E), cells: new Int32Array(n),
    cellRow: new Int32Array(n) };
  const a = new Int32Array(n), b = new Int32Array(n), aE = new Int32Array(n);
  const xlogx = Float64Array.from({ length: n + 1 }, (_, v) => (v > 1 ? v * Math.log2(v) : 0));
  for (let l = 0; l + 1 < L; l++) {
    ca.fill(0); cb.fill(0);
    for (let i = 0, o = l; i < n; i++, o += L) {
      const x = top1[o], y = top1[o + 1];
      a[i] = x; aE[i] = x * E; b[i] = y; ca[x]++; cb[y]++;
    }
    let colMax = 0, marginal = 0;
    for (let e = 0; e < E; e++) {
      pa[e] = ca[e] / n; pb[e] = cb[e] / n;
      if (cb[e] > colMax) colMax = cb[e];
      marginal += xlogx[ca[e]] + xlogx[cb[e]];
    }
    const [mi, p] = pairFigures(a, b, n, E, pa, pb, scratch);
    const [mi0, p0] = shuffledFigures(aE, a, b, perms, n, E, xlogx, marginal, scratch);
    out.pairs.push([layers[l], layers[l + 1]]);
    out.mutual_information_bits.push(mi);
    out.predictability.push(p);
    out.predictability_baseline.push(colMax / n);
    out.mutual_information_shuffled.push(mi0);
    out.predictability_shuffled.push(p0);
  }
  return out;
}

// For token ids seen >= minCount times: per layer, the share of their occurrences whose
// top-1 is the token's commonest top-1 there (pooled), with the seeded baselines.
export function vocabularySpecialization(sel, top1, texts, { minCount = 10, top = 10, layers } = {}) {
  const { tokens, lo, n, L, E } = sel;
  const occ = new Map();
  for (let i = 0; i < n; i++) { const id = tokens[lo + i].id; occ.set(id, (occ.get(id) || 0) + 1); }
  const freqIds = [...occ.keys()].filter((id) => occ.get(id) >= minCount).sort((a, b) => a - b);
  const compact = new Map(freqIds.map((id, j) => [id, j]));
  const F = freqIds.length;
  const occF = freqIds.map((id) => occ.get(id));
  const totalOcc = occF.reduce((a, b) => a + b, 0);
  const result = { moe_layers: layers, min_count: minCount, tokens: F, occurrences: totalOcc };
  if (!F) {
    return Object.assign(result, { share: new Array(L).fill(null), shuffled_baseline: new Array(L).fill(null),
      uniform_baseline: null, most_specialized: [], note: `no token id occurs ${minCount} times or more` });
  }
  const R = totalOcc, rows = new Int32Array(R), tok = new Int32Array(R);
  for (let i = 0, r = 0; i < n; i++) {
    const j = compact.get(tokens[lo + i].id);
    if (j !== undefined) { rows[r] = i; tok[r++] = j; }
  }
  const rng = mulberry32(0);
  const S = Math.max(1, Math.min(16, Math.floor(SHUFFLE_DRAWS / R)));
  const shuffles = Array.from({ length: S }, () => { const p = permutation(R, rng); return Int32Array.from(p, (x) => tok[x]); });
  const scratch = { bins: new Int32Array(F * E), cells: new Int32Array(R) }, best = new Float64Array(L * F);
  const share = [], shuffled = [], routed = new Int32Array(R), tmp = new Float64Array(F);
  for (let l = 0; l < L; l++) {
    for (let r = 0; r < R; r++) routed[r] = top1[rows[r] * L + l];
    largest(tok, routed, scratch, E, best.subarray(l * F, (l + 1) * F));
    let s = 0;
    for (let j = 0; j < F; j++) s += best[l * F + j];
    share.push(s / totalOcc);
    let acc = 0;
    for (const sh of shuffles) {
      largest(sh, routed, scratch, E, tmp);
      let m = 0;
      for (let j = 0; j < F; j++) m += tmp[j];
      acc += m / S;
    }
    shuffled.push(acc / totalOcc);
  }
  const perToken = freqIds.map((_, j) => {
    let s = 0;
    for (let l = 0; l < L; l++) s += best[l * F + j] / occF[j];
    return s / L;
  });
  const order = freqIds.map((_, j) => j).sort((a, b) => perToken[b] - perToken[a] || occF[b] - occF[a] ||
    freqIds[a] - freqIds[b]).slice(0, top);
  return Object.assign(result, {
    share, shuffled_baseline: shuffled, uniform_baseline: uniformMaxShare(occF, E),
    most_specialized: order.map((j) => ({ id: freqIds[j], text: texts.get(freqIds[j]) || "", occurrences: occF[j],
      mean_share: perToken[j] })),
  });
}

// Per token j, its count at its most frequent expert. Only touched bins are visited;
// `scratch.bins` [F*E] is left zeroed.
function largest(tok, routed, scratch, E, out) {
  const { bins, cells } = scratch;
  out.fill(0);
  let m = 0;
  for (let r = 0; r < tok.length; r++) {
    const c = tok[r] * E + routed[r];
    if (bins[c]++ === 0) cells[m++] = c;
  }
  for (let j = 0; j < m; j++) {
    const c = cells[j], t = (c / E) | 0;
    if (bins[c] > out[t]) out[t] = bins[c];
    bins[c] = 0;
  }
}

function uniformMaxShare(occ, E) {
  const rng = mulberry32(1), total = occ.reduce((a, b) => a + b, 0);
  const repeats = Math.max(1, Math.min(32, Math.floor(SHUFFLE_DRAWS / total)));
  const bins = new Int32Array(E);
  let best = 0;
  for (let r = 0; r < repeats; r++) {
    for (const c of occ) {
      bins.fill(0);
      let m = 0;
      for (let i = 0; i < c; i++) { const v = ++bins[Math.floor(rng() * E)]; if (v > m) m = v; }
      best += m;
    }
  }
  return best / (repeats * total);
}

// Small seeded generator and Fisher-Yates permutation (reproducible baselines).
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function permutation(n, rng) {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); const t = p[i]; p[i] = p[j]; p[j] = t; }
  return p;
}
