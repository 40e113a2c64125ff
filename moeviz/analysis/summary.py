"""Everything `moeviz stats` reports about one trace, as one JSON-ready dict."""
from __future__ import annotations

import math

import numpy as np

from .balance import dormant_experts, load_balance, saturation_curve
from .compare import compare_routings
from .confidence import router_confidence
from .expert_cache import cache_hit_rates
from .locality import consecutive_repetition, transition_summary
from .routing import Routing, select_tokens
from .tallies import tally
from .tokens import vocabulary_specialization

MIN_TOKEN_COUNT = 10


def trace_stats(trace, tokens: str = "all", name: str | None = None, cache: bool = True,
                min_token_count: int = MIN_TOKEN_COUNT, jobs: int = 1) -> dict:
    """All summary metrics of `trace` over its prompt, generated or all tokens.

    Per-layer details the page asks for one at a time (co-activation matrix, expert
    token profile, transition matrix, routing map) are separate functions."""
    return routing_stats(select_tokens(trace, tokens, name), cache=cache, min_token_count=min_token_count, jobs=jobs)


def routing_stats(routing: Routing, cache: bool = True, min_token_count: int = MIN_TOKEN_COUNT, jobs: int = 1) -> dict:
    """`jobs` > 1: the passes over every assignment (tallies, cache simulation) and the
    per-layer shuffled baselines run in that many processes; every number is the same."""
    tal = tally(routing, jobs)
    n, k, E = routing.n_tokens, routing.k, routing.n_expert
    dormant = dormant_experts(routing)
    stats = {
        "trace": routing.name,
        "model": {f: routing.model.get(f) for f in ("name", "architecture", "n_expert", "n_expert_used",
                                                    "n_shared_experts", "gating", "moe_layers", "dense_layers")}
                 | {"experts_per_token": k},    # the routing's own top-k (a run may override the model's)
        "tokens": {"selection": routing.selection, "count": n,
                   "prompt": sum(1 for t in routing.tokens if t["prompt"])},
        "utilization": {"counts": tal.counts, "top1_counts": tal.top1_counts},
        "balance": load_balance(routing),
        "dormant": {**dormant, "uniform_expected_fraction": (1 - k / E) ** n},
        "saturation": saturation_curve(routing),
        "locality": consecutive_repetition(routing),
        "transitions": transition_summary(routing, jobs=jobs),
        "specialization": vocabulary_specialization(routing, min_count=min_token_count, jobs=jobs),
        "confidence": router_confidence(routing) if routing.probs is not None else None,
        "expert_cache": cache_hit_rates(routing, jobs=jobs) if cache else None,
    }
    if routing.probs is None:
        stats["confidence_note"] = "no router probabilities in this trace (record with --probs)"
    return stats


def comparison_stats(routings: list[Routing]) -> dict:
    return compare_routings(routings)


def to_json(value):
    """Plain JSON types: numpy arrays and scalars to lists and numbers; NaN and
    infinities (an undefined figure, such as a ratio over zero tokens) to None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return to_json(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value
