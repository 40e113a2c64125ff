"""Routing analysis: pure-numpy statistics of recorded traces (docs/analysis.md).

Select the tokens once, then ask for figures; each function returns plain dicts of
numpy arrays and numbers (`to_json` makes them JSON). Layers are named by their
model layer index; arrays run over MoE layers in `moe_layers` order.

    r = select_tokens(trace, "generated")
    load_balance(r)["gini"]          # per MoE layer
    coactivation(r, layer=5)         # one layer's [E, E] matrix
    trace_stats(trace)               # everything `moeviz stats` prints
"""
from .balance import balance_metrics, dormant_experts, load_balance, saturation_curve, utilization
from .compare import compare_routings
from .confidence import router_confidence
from .expert_cache import cache_hit_rates, stack_distances
from .locality import (coactivation, consecutive_repetition, layer_transitions, routing_map,
                       transition_summary)
from .routing import TOKEN_SELECTIONS, AnalysisError, Routing, select_tokens
from .tallies import Tallies, tally
from .summary import routing_stats, to_json, trace_stats
from .tokens import expert_token_profile, vocabulary_specialization

__all__ = [
    "TOKEN_SELECTIONS", "AnalysisError", "Routing", "balance_metrics", "cache_hit_rates", "coactivation",
    "compare_routings", "consecutive_repetition", "dormant_experts", "expert_token_profile", "layer_transitions",
    "load_balance", "router_confidence", "routing_map", "routing_stats", "saturation_curve", "Tallies", "tally",
    "select_tokens", "stack_distances", "to_json", "trace_stats", "transition_summary", "utilization",
    "vocabulary_specialization",
]
