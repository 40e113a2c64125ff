"""Comparing traces of one model: which experts each uses, and which none does."""
from __future__ import annotations

import itertools

import numpy as np

from ..trace.summary import dormant
from .routing import AnalysisError, Routing, same_model
from .tallies import tally


def compare_routings(routings: list[Routing]) -> dict:
    """Per MoE layer: Jaccard index |A ∩ B| / |A ∪ B| of the used-expert sets of every
    pair of traces, and the experts dormant in every trace.

    Traces of different models are refused (expert ids mean nothing across models)."""
    if len(routings) < 2:
        raise AnalysisError("comparing needs at least two traces")
    same_model(routings)
    counts = [tally(r).counts for r in routings]
    used = np.stack([c > 0 for c in counts])                         # [T, L, E]
    pairs = []
    for a, b in itertools.combinations(range(len(routings)), 2):
        inter = (used[a] & used[b]).sum(axis=1)
        union = (used[a] | used[b]).sum(axis=1)
        # Both dormant everywhere in a layer: the sets agree, but the index is 0/0.
        jaccard = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        pairs.append({"traces": [routings[a].name, routings[b].name], "jaccard": jaccard,
                      "mean_jaccard": float(np.nanmean(jaccard)) if np.isfinite(jaccard).any() else None})
    # dormant in all = dormant in the traces' summed counts
    in_all = dormant(np.sum(counts, axis=0))
    first = routings[0]
    return {"traces": [r.name for r in routings], "moe_layers": first.moe_layers, "pairs": pairs,
            "dormant_in_all": in_all["experts"], "dormant_in_all_count": in_all["count"],
            "dormant_in_all_total": in_all["total"], "dormant_in_all_fraction": float(in_all["total_fraction"]),
            "dormant_per_trace": [dormant(c)["total"] for c in counts]}
