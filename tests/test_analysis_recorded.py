"""The analysis on a trace recorded from a fixture model (dense first layer, shared
experts, sigmoid gating, router probabilities)."""
import json

import numpy as np
import pytest

from moeviz import analysis as A


@pytest.fixture(scope="module")
def recorded(engines):
    from moeviz.engine import SamplingSettings
    from moeviz.trace.builder import TraceBuilder

    e = engines("deepseek2")
    b = TraceBuilder(e.info, "the cat sat on the mat", {"probs": True})
    for ev in e.generate("the cat sat on the mat", SamplingSettings(max_tokens=12, seed=1), probs=True):
        b.add(ev)
    return b.trace()


@pytest.mark.slow
def test_stats_of_a_recorded_trace(recorded):
    t = recorded
    s = A.trace_stats(t)
    n, k, E = t.n_tokens, t.model["n_expert_used"], t.model["n_expert"]
    assert s["model"]["moe_layers"] == [1, 2, 3] and s["model"]["dense_layers"] == [0]
    assert (s["utilization"]["counts"].sum(axis=1) == n * k).all()
    assert s["confidence"]["gating"] == "sigmoid" and not s["confidence"]["scores_are_probabilities"]
    cache = s["expert_cache"]
    # With every expert cached, only first uses miss.
    assert cache["lru_overall"][-1] == pytest.approx(1 - cache["compulsory_miss"])
    assert cache["static_overall"][-1] == 1
    top1 = A.routing_map(A.select_tokens(t))["top1"]
    best = np.take_along_axis(t.expert_ids, np.argmax(t.weights, axis=-1)[..., None], -1)[..., 0]
    assert top1.shape == (n, 3) and (top1 == best).all()
    json.dumps(A.to_json(s))                                   # JSON-ready throughout


def test_generated_tokens_only_and_the_dense_layer(recorded):
    r = A.select_tokens(recorded, "generated")
    assert r.n_tokens == recorded.n_tokens - recorded.n_prompt
    assert A.tally(r).counts.sum() == r.n_tokens * r.k * 3
    with pytest.raises(A.AnalysisError, match="layer 0 is a dense layer"):
        A.coactivation(r, 0)
