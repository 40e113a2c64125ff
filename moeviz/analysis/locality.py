"""Routing locality: the routing map, repetition between consecutive tokens,
co-activation within a layer, and top-1 transitions between adjacent MoE layers.

Each figure comes with the value uniform random routing would give and with a
"shuffled" baseline, the expectation if the same routings came in a random token
order (exact where there is a formula, else averaged over seeded shuffles): that
separates locality from plain imbalance (a layer that always picks expert 3
repeats itself without any locality).
"""
from __future__ import annotations

import math

import numpy as np

from .parallel import map_ranges
from .routing import AnalysisError, Routing
from .tallies import tally

PAIR_CHUNK_ROWS = 1 << 16
SHUFFLE_DRAWS = 1 << 20      # token pairings drawn for the shuffled transition baselines


def routing_map(routing: Routing) -> dict:
    """Top-1 expert (largest gate weight) per token and MoE layer: `top1` [n, L]."""
    return {"moe_layers": routing.moe_layers, "top1": tally(routing).top1,
            "tokens": [t["text"] for t in routing.tokens]}


def consecutive_repetition(routing: Routing) -> dict:
    """Per layer: how often token t+1 keeps token t's top-1 expert, and what share of
    its top-k set it keeps, against uniform and shuffled-order baselines.

    Shuffled baselines are exact expectations over random orderings of the same
    tokens: a random pair of distinct tokens shares expert e with probability
    c_e (c_e - 1) / (n (n - 1)), c_e being e's count.
    """
    tal = tally(routing)
    n, k, E = routing.n_tokens, routing.k, routing.n_expert
    L = routing.n_layers
    if n < 2:
        none = [None] * L
        return {"moe_layers": routing.moe_layers, "pairs": 0, "top1_repeat": none, "top1_repeat_uniform": 1 / E,
                "top1_repeat_shuffled": none, "topk_overlap": none, "topk_overlap_uniform": k / E,
                "topk_overlap_shuffled": none, "note": "needs at least 2 tokens"}
    pairs = n - 1
    top1 = tal.top1_by_layer
    repeats = np.array([np.count_nonzero(row[1:] == row[:-1]) for row in top1])
    return {"moe_layers": routing.moe_layers, "pairs": pairs,
            "top1_repeat": repeats / pairs, "top1_repeat_uniform": 1 / E,
            "top1_repeat_shuffled": _shared_by_random_pair(tal.top1_counts, n),
            "topk_overlap": tal.overlap / (pairs * k), "topk_overlap_uniform": k / E,
            "topk_overlap_shuffled": _shared_by_random_pair(tal.counts, n) / k}


def _shared_by_random_pair(counts: np.ndarray, n: int) -> np.ndarray:
    """Per layer, expected experts shared by two distinct random tokens: sum_e c_e (c_e - 1) / (n (n - 1))."""
    c = counts.astype(np.float64)
    return (c * (c - 1)).sum(axis=1) / (n * (n - 1.0))


def coactivation(routing: Routing, layer: int) -> dict:
    """Within one MoE layer (model layer index): N[i, j] = tokens selecting both i and j
    (N[i, i] = tokens selecting i) and conditional[i, j] = N[i, j] / N[i, i], the share
    of i's tokens that also select j (NaN for a dormant i). Uniform random top-k
    routing gives (k - 1) / (E - 1) off the diagonal."""
    li = routing.layer_index(layer)
    k, E = routing.k, routing.n_expert
    ids = routing.expert_ids[:, li, :]
    pair_counts = np.zeros(E * E, np.int64)
    for s in range(0, len(ids), PAIR_CHUNK_ROWS):
        u = ids[s:s + PAIR_CHUNK_ROWS].astype(np.intp)
        for a in range(k):
            for b in range(a + 1, k):
                pair_counts += np.bincount(u[:, a] * E + u[:, b], minlength=E * E)
    n = pair_counts.reshape(E, E)
    n = n + n.T                                   # a token's experts are distinct: no diagonal yet
    n[np.diag_indices(E)] = tally(routing).counts[li]
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = n / np.diag(n)[:, None]
    return {"layer": layer, "counts": n, "conditional": conditional,
            "uniform": (k - 1) / (E - 1) if E > 1 else None, "top_pairs": _top_pairs(n, conditional)}


def _top_pairs(n: np.ndarray, conditional: np.ndarray, top: int = 10) -> list[dict]:
    i, j = np.triu_indices(len(n), 1)
    together = n[i, j]
    order = np.lexsort((j, i, -together))[:top]
    return [{"experts": [int(i[o]), int(j[o])], "tokens": int(together[o]),
             "share_of_first": _finite(conditional[i[o], j[o]]), "share_of_second": _finite(conditional[j[o], i[o]])}
            for o in order if together[o] > 0]


def layer_transitions(routing: Routing, layer: int) -> dict:
    """Top-1 expert at MoE layer `layer` (model index) against top-1 at the next MoE layer:
    counts [E, E] (row: this layer's expert) and row-conditional shares."""
    li = routing.layer_index(layer)
    if li + 1 >= routing.n_layers:
        raise AnalysisError(f"layer {layer} is the last MoE layer; transitions go from a layer to the next MoE layer")
    t = tally(routing).transitions[li]
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = t / t.sum(axis=1, keepdims=True)
    return {"layer": layer, "next_layer": routing.moe_layers[li + 1], "counts": t, "conditional": conditional}


def transition_summary(routing: Routing, jobs: int = 1) -> dict:
    """Per adjacent MoE layer pair: mutual information (bits) between the two layers'
    top-1 experts, and "predictability", how often the next top-1 is the commonest
    successor of this top-1, against always guessing the next layer's commonest top-1.

    Both are plug-in figures, inflated on short traces (with n tokens and E experts,
    unrelated layers still show information when n is not much larger than E^2), so
    each has a `_shuffled` baseline: the same figure with the next layer's top-1
    experts shuffled across tokens (both layers' distributions kept, the pairing
    broken), averaged over seeded shuffles — reproducible."""
    tal = tally(routing)
    n, E = routing.n_tokens, routing.n_expert
    top1 = tal.top1_by_layer
    rng = np.random.default_rng(0)
    shuffles = [rng.permutation(n) for _ in range(max(1, min(16, SHUFFLE_DRAWS // n)))]
    out = {"pairs": [[a, b] for a, b in zip(routing.moe_layers[:-1], routing.moe_layers[1:])],
           "mutual_information_bits": [], "predictability": [], "predictability_baseline": [],
           "mutual_information_shuffled": [], "predictability_shuffled": []}
    for i in range(len(top1) - 1):
        mi, predict = _figures(top1[i], top1[i + 1], E, n)
        out["mutual_information_bits"].append(mi)
        out["predictability"].append(predict)
        out["predictability_baseline"].append(float(np.bincount(top1[i + 1]).max() / n))
    for part in map_ranges(_shuffled_pairs, len(top1) - 1, jobs, top1, shuffles, E, size=routing.expert_ids.size):
        for mi0, p0 in part:
            out["mutual_information_shuffled"].append(mi0)
            out["predictability_shuffled"].append(p0)
    return out


def _shuffled_pairs(lo, hi, top1, shuffles, E) -> list[tuple[float, float]]:
    """Layer pairs lo..hi-1: mutual information and predictability with the next
    layer's top-1 experts shuffled, averaged over the shuffles."""
    n = top1.shape[1]
    out = []
    for i in range(lo, hi):
        mi0 = p0 = 0.0
        for order in shuffles:
            m, p = _figures(top1[i], top1[i + 1][order], E, n)
            mi0, p0 = mi0 + m / len(shuffles), p0 + p / len(shuffles)
        out.append((mi0, p0))
    return out


def _figures(a: np.ndarray, b: np.ndarray, E: int, n: int) -> tuple[float, float]:
    """Mutual information and predictability of top-1 pairs (a[t], b[t]) with work bounded
    by the data: the [E, E] table where it is no bigger than a few times the tokens,
    else only the pairs that occur (a trace may claim up to 1024 experts for 2 tokens)."""
    code = a.astype(np.intp) * E + b
    if E * E <= 8 * n:
        return _pair_figures(np.bincount(code, minlength=E * E).reshape(E, E), n)
    pairs, c = np.unique(code, return_counts=True)      # row-major order, as the table's nonzero cells
    ia, ib = pairs // E, pairs % E
    joint = c / n
    pa, pb = np.bincount(a, minlength=E) / n, np.bincount(b, minlength=E) / n
    mi = float((joint * np.log2(joint / (pa[ia] * pb[ib]))).sum())
    rows = np.flatnonzero(np.r_[True, ia[1:] != ia[:-1]])
    return max(mi, 0.0), float(np.maximum.reduceat(c, rows).sum() / n)


def _pair_figures(t: np.ndarray, n: int) -> tuple[float, float]:
    """Plug-in mutual information (bits) and predictability of a [E, E] count table."""
    joint = t / n
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = float((joint[nz] * np.log2(joint[nz] / np.outer(pa, pb)[nz])).sum())
    return max(mi, 0.0), float(t.max(axis=1).sum() / n)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
