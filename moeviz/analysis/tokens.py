"""Which tokens go where: an expert's token profile and vocabulary specialization."""
from __future__ import annotations

import numpy as np

from .parallel import map_ranges
from .routing import Routing
from .tallies import tally

SIMULATED_DRAWS = 1 << 20   # uniform-routing draws behind the specialization baseline


def expert_token_profile(routing: Routing, layer: int, expert: int, top: int = 20) -> dict:
    """The tokens most often routed to `expert` (in its top-k) at MoE layer `layer`
    (model index), with lift = P(token | routed to expert) / P(token): above 1 the
    expert sees the token more often than the text does."""
    li = routing.layer_index(layer)
    routing.check_expert(expert)
    routed = (routing.expert_ids[:, li, :] == expert).any(axis=1)
    ids = routing.token_ids
    n, n_routed = len(ids), int(routed.sum())
    result = {"layer": layer, "expert": expert, "tokens_routed": n_routed, "tokens_total": n,
              "share_of_tokens": n_routed / n, "top": []}
    if n_routed == 0:
        result["note"] = "dormant: no selected token was routed to this expert"
        return result
    uniq, inverse, overall = np.unique(ids, return_inverse=True, return_counts=True)
    here = np.bincount(inverse[routed], minlength=len(uniq))
    order = np.lexsort((uniq, -here))[:top]
    for o in order:
        if here[o] == 0:
            break
        result["top"].append({"id": int(uniq[o]), "text": routing.token_text(uniq[o]), "count": int(here[o]),
                              "occurrences": int(overall[o]), "routed_share": here[o] / overall[o],
                              "lift": (here[o] / n_routed) / (overall[o] / n)})
    return result


def vocabulary_specialization(routing: Routing, min_count: int = 10, top: int = 10, jobs: int = 1) -> dict:
    """For token ids seen at least `min_count` times: per layer, the share of their
    occurrences whose top-1 expert is the token's most frequent top-1 expert there.

    `share` pools the tokens (sum of each token's largest count / their occurrences).
    A token seen 10 times reaches at least 0.1 by chance, and an unbalanced layer
    looks specialized for every token, so two baselines come with it, both from
    seeded simulations (reproducible): `shuffled_baseline`, per layer, the same figure
    with the tokens shuffled across positions (the layer's routing and each token's
    count kept, the link between them broken), and `uniform_baseline`, for uniform
    random top-1 routing. `most_specialized` lists the tokens with the highest share
    averaged over layers."""
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    ids = routing.token_ids
    uniq, inverse, occurrences = np.unique(ids, return_inverse=True, return_counts=True)
    frequent = occurrences >= min_count
    result = {"moe_layers": routing.moe_layers, "min_count": min_count, "tokens": int(frequent.sum()),
              "occurrences": int(occurrences[frequent].sum())}
    if not frequent.any():
        result.update(share=[None] * routing.n_layers, shuffled_baseline=[None] * routing.n_layers,
                      uniform_baseline=None, most_specialized=[],
                      note=f"no token id occurs {min_count} times or more")
        return result
    E = routing.n_expert
    compact = np.full(len(uniq), -1, np.intp)
    compact[frequent] = np.arange(int(frequent.sum()))
    row_token = compact[inverse]
    rows = np.flatnonzero(row_token >= 0)
    tok = row_token[rows] * E
    n_freq = int(frequent.sum())
    top1 = tally(routing).top1_by_layer
    rng = np.random.default_rng(0)
    shuffles = [tok[rng.permutation(len(tok))] for _ in range(max(1, min(16, SIMULATED_DRAWS // len(tok))))]
    parts = map_ranges(_layer_specialization, routing.n_layers, jobs, top1, rows, tok, shuffles, n_freq, E,
                       size=routing.expert_ids.size)
    best = np.concatenate([b for b, _ in parts])
    shuffled = np.concatenate([sh for _, sh in parts])
    occ = occurrences[frequent]
    per_token = (best / occ).mean(axis=0)
    order = np.lexsort((uniq[frequent], -occ, -per_token))[:top]
    result.update(
        share=best.sum(axis=1) / occ.sum(),
        shuffled_baseline=shuffled / occ.sum(),
        uniform_baseline=_uniform_max_share(occ, E),
        most_specialized=[{"id": int(uniq[frequent][o]), "text": routing.token_text(uniq[frequent][o]),
                           "occurrences": int(occ[o]), "mean_share": float(per_token[o])} for o in order])
    return result


def _layer_specialization(lo, hi, top1, rows, tok, shuffles, n_freq, E):
    """Layers lo..hi-1: each frequent token's count at its commonest top-1 expert, and
    the pooled figure averaged over the shuffles."""
    best = np.empty((hi - lo, n_freq), np.int64)
    shuffled = np.zeros(hi - lo)
    for i in range(lo, hi):
        routed = top1[i][rows]
        best[i - lo] = _largest_counts(tok + routed, n_freq, E)
        for s in shuffles:
            shuffled[i - lo] += _largest_counts(s + routed, n_freq, E).sum() / len(shuffles)
    return best, shuffled


def _largest_counts(code: np.ndarray, n_tokens: int, n_expert: int) -> np.ndarray:
    """Per token, its count at its most frequent expert (code = token * E + expert)."""
    return np.bincount(code, minlength=n_tokens * n_expert).reshape(n_tokens, n_expert).max(axis=1)


def _uniform_max_share(occurrences: np.ndarray, n_expert: int) -> float:
    """Pooled max-share when each occurrence picks a top-1 expert uniformly at random."""
    rng = np.random.default_rng(0)
    total = int(occurrences.sum())
    repeats = max(1, min(32, SIMULATED_DRAWS // total))
    token = np.repeat(np.arange(len(occurrences)) * n_expert, occurrences)
    best = 0
    for _ in range(repeats):
        draw = token + rng.integers(0, n_expert, total)
        best += _largest_counts(draw, len(occurrences), n_expert).sum()
    return best / (repeats * total)
