// Words and figures every view shares, defined once (Python's are in
// moeviz/analysis/routing.py and moeviz/trace/summary.py, with the same meaning).
//
// Token selections: which tokens a figure counts. One vocabulary for the page, its
// analysis panels, `moeviz stats --tokens` and the stats API:
//   all        every token
//   prompt     the prompt's tokens (they come first in a trace)
//   generated  the tokens the model produced
// The page once said prefill / decode / both for these: tokenSelection() still
// reads those words (the console API, old links), mapping them here and nowhere else.
export const TOKEN_SELECTIONS = ["all", "prompt", "generated"];
const OLD_WORDS = { both: "all", prefill: "prompt", decode: "generated" };

export function tokenSelection(word) {
  const w = OLD_WORDS[word] || word;
  if (!TOKEN_SELECTIONS.includes(w)) throw new Error(`tokens must be one of ${TOKEN_SELECTIONS.join(", ")}, not ${JSON.stringify(word)}`);
  return w;
}

// "prompt tokens", "generated tokens", or just "tokens" for all of them.
export function tokensWord(selection, plural = true) {
  const noun = plural ? "tokens" : "token";
  return selection === "all" ? noun : `${selection} ${noun}`;
}

// Dormant experts: (MoE layer, expert) cells with a zero selection count. The one
// computation behind the dormant card, the analysis panels and the comparison.
//   counts  [L * E] selection counts, MoE row-major (any array of numbers)
//   experts true: also list each layer's dormant expert ids
//   masked  optional Set of cells (row * E + expert) the run forbade (--mask): never
//           selected because they could not be, so counted apart, not as dormant
// -> {perLayer: [L] dormant count per layer, total, fraction (of the L * E - masked
//     cells that could be chosen), experts?: [L][ids], masked, maskedPerLayer: [L]}
export function dormantOf(counts, L, E, { experts = false, masked = null } = {}) {
  const perLayer = new Array(L), ids = experts ? new Array(L) : null, maskedPerLayer = new Array(L);
  let total = 0, nMasked = 0;
  for (let l = 0; l < L; l++) {
    let d = 0, m = 0;
    const list = experts ? [] : null;
    for (let e = 0, c = l * E; e < E; e++, c++) {
      if (masked && masked.has(c)) { m++; continue; }
      if (counts[c] === 0) { d++; if (list) list.push(e); }
    }
    perLayer[l] = d;
    maskedPerLayer[l] = m;
    if (ids) ids[l] = list;
    total += d;
    nMasked += m;
  }
  const open = L * E - nMasked;
  const out = { perLayer, total, fraction: open ? total / open : 0, masked: nMasked, maskedPerLayer };
  if (ids) out.experts = ids;
  return out;
}
