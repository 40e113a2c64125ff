"""Expert utilization, load balance, dormant experts and the saturation curve.

All figures are per MoE layer, from counts[i, e] = tokens whose top-k at MoE layer i
includes expert e (tallies.py). Definitions and baselines: docs/analysis.md.
"""
from __future__ import annotations

import math

import numpy as np

from ..trace.summary import dormant
from .routing import Routing
from .tallies import tally

TOP_SHARE_FRACTION = 0.10   # "share taken by the top 10% of experts"


def utilization(routing: Routing) -> dict:
    """Per-layer histogram of selections: counts [L, E] and their share of the layer's assignments."""
    counts = tally(routing).counts
    return {"moe_layers": routing.moe_layers, "counts": counts,
            "share": counts / counts.sum(axis=1, keepdims=True)}


def balance_metrics(counts: np.ndarray, k: int) -> dict:
    """Load-balance figures per layer from counts [L, E] (every row sums to n_tokens * k).

    Returns arrays of length L plus the values perfectly even routing would give
    (`ideal`) and, for the coefficient of variation, what uniform random routing of
    the same number of tokens gives (`cv_random`): finite samples are never flat.
    """
    counts = np.asarray(counts, dtype=np.float64)
    L, E = counts.shape
    total = counts.sum(axis=1)
    if (total <= 0).any():
        raise ValueError("every layer needs at least one assignment")
    mean = total / E
    share = counts / total[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(share > 0, share * np.log(share), 0.0)
    entropy = -plogp.sum(axis=1) / math.log(E) if E > 1 else np.full(L, np.nan)
    n_top = max(1, math.ceil(TOP_SHARE_FRACTION * E))
    ascending = np.sort(counts, axis=1)
    rank = np.arange(1, E + 1)
    n_tokens = total / k
    p = k / E
    return {
        "cv": counts.std(axis=1) / mean,
        "normalized_entropy": entropy,
        "max_violation": (counts.max(axis=1) - mean) / mean,
        "jain_index": total ** 2 / (E * (counts ** 2).sum(axis=1)),
        "gini": ((2 * rank - E - 1) * ascending).sum(axis=1) / (E * total),
        "top_share": ascending[:, E - n_top:].sum(axis=1) / total,
        "top_share_experts": n_top,
        "cv_random": np.sqrt((1 - p) / (n_tokens * p)) if p < 1 else np.zeros(L),
        "ideal": {"cv": 0.0, "normalized_entropy": 1.0, "max_violation": 0.0, "jain_index": 1.0, "gini": 0.0,
                  "top_share": n_top / E},
    }


def load_balance(routing: Routing) -> dict:
    """balance_metrics of the routing's counts, labelled with model layer indices."""
    return {"moe_layers": routing.moe_layers, **balance_metrics(tally(routing).counts, routing.k)}


def dormant_experts(routing: Routing) -> dict:
    """Experts never selected, per layer and overall, over the selected tokens
    (moeviz.trace.summary.dormant of the routing's counts)."""
    d = dormant(tally(routing).counts)
    return {"moe_layers": routing.moe_layers, "per_layer": d["experts"], "count": d["count"],
            "fraction": d["fraction"], "total": d["total"], "total_fraction": float(d["total_fraction"])}


def saturation_curve(routing: Routing, points: int = 64, per_layer: bool = False) -> dict:
    """Dormant fraction after the first t tokens, against (1 - k/E)^t, the expected
    fraction under uniform random top-k routing.

    `tokens` holds the t values: about `points` of them, spread evenly on a log scale
    from 1 to n (always including n). With per_layer, `per_layer[i]` is layer i's curve.
    """
    first = tally(routing).first_use
    n, k, E = routing.n_tokens, routing.k, routing.n_expert
    t = token_grid(n, points)
    # An expert is dormant after t tokens until its first use: first_use >= t, or never (-1).
    never = first < 0
    first_sorted = np.sort(np.where(never, n, first), axis=None)
    seen = np.searchsorted(first_sorted, t, side="left")   # count of first uses < t
    result = {"tokens": t, "dormant_fraction": 1 - seen / first.size,
              "uniform_expected": (1 - k / E) ** t.astype(np.float64)}
    if per_layer:
        per = np.sort(np.where(never, n, first), axis=1)
        result["per_layer"] = np.stack([1 - np.searchsorted(row, t, side="left") / E for row in per])
    return result


def token_grid(n: int, points: int) -> np.ndarray:
    """About `points` integers in [1, n], log-spaced, strictly increasing, ending at n."""
    if n <= points:
        return np.arange(1, n + 1)
    grid = np.unique(np.round(np.geomspace(1, n, points)).astype(np.int64))
    return grid if grid[-1] == n else np.append(grid, n)
