"""Router confidence, from the full router scores a trace records with --probs."""
from __future__ import annotations

import math

import numpy as np

from .routing import AnalysisError, Routing

CHUNK_SCORES = 1 << 22
QUANTILES = (0.1, 0.5, 0.9)
# Gatings whose recorded scores are a softmax over all experts (docs/trace-format.md).
PROBABILITY_GATINGS = ("softmax", "softmax_weight")


def router_confidence(routing: Routing) -> dict:
    """Per MoE layer, over tokens: the top-1 score, the margin between the k-th and
    (k+1)-th largest scores (how close the last selected expert came to losing its
    place), and the entropy of the scores normalized to sum 1, divided by log E
    (1 = the router could not tell experts apart, 0 = all mass on one).

    Each figure is summarized by its mean and 10/50/90th percentiles. Sigmoid routers
    score experts independently: their "top-1 probability" is a score in (0, 1), not
    a probability (`scores_are_probabilities` says which)."""
    if routing.probs is None:
        raise AnalysisError(f"{routing.name} has no router probabilities: record it with --probs "
                            "to get router confidence")
    n, L, E = routing.probs.shape
    k = routing.k
    top1 = np.empty((L, n), np.float32)
    margin = np.empty((L, n), np.float32) if k < E else None
    entropy = np.empty((L, n), np.float64)
    rows = max(1, CHUNK_SCORES // (L * E))
    for s in range(0, n, rows):
        p = routing.probs[s:s + rows].astype(np.float64)
        # The k+1 largest scores, largest first (partition, then sort only those).
        part = -np.partition(-p, min(k, E - 1), axis=-1)[..., :min(k + 1, E)]
        part = -np.sort(-part, axis=-1)
        top1[:, s:s + rows] = part[..., 0].T
        if margin is not None:
            margin[:, s:s + rows] = (part[..., k - 1] - part[..., k]).T
        entropy[:, s:s + rows] = _normalized_entropy(p).T
    gating = routing.model.get("gating")
    return {"moe_layers": routing.moe_layers, "gating": gating,
            "scores_are_probabilities": gating in PROBABILITY_GATINGS,
            "top1": _summary(top1), "margin": _summary(margin) if margin is not None else None,
            "entropy": _summary(entropy),
            "note": None if margin is not None else "k = n_expert: every expert is selected, no margin"}


def _normalized_entropy(p: np.ndarray) -> np.ndarray:
    E = p.shape[-1]
    total = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p / total
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=-1)
    # All-zero scores carry no distribution: NaN, left out of the summaries.
    h = np.where(total[..., 0] > 0, h, np.nan)
    return h / math.log(E) if E > 1 else np.zeros_like(h)


def _summary(values: np.ndarray) -> dict:
    """mean and quantiles per layer (rows) and over everything."""
    v = values.astype(np.float64)
    q = np.nanquantile(v, QUANTILES, axis=1)
    return {"mean": np.nanmean(v, axis=1), **{f"p{round(x * 100)}": q[i] for i, x in enumerate(QUANTILES)},
            "overall_mean": float(np.nanmean(v))}
