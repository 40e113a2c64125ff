"""Routing analysis on small hand-built traces whose answers are worked out here."""
import argparse
import json
import math

import numpy as np
import pytest

from moeviz import analysis as A
from moeviz.analysis import cli as stats_cli
from moeviz.analysis import tallies as tallies_module
from moeviz.trace import Trace, save


def make_trace(ids, E, weights=None, probs=None, n_prompt=0, token_ids=None, texts=None, moe_layers=None,
               name="m", dense_layers=None):
    """ids: nested list [n][L][k] (or [n][k] for one layer). Weights default to
    descending by position, so the first listed expert is the top-1."""
    ids = np.asarray(ids, dtype=np.int32)
    if ids.ndim == 2:
        ids = ids[:, None, :]
    n, L, k = ids.shape
    if weights is None:
        weights = np.broadcast_to(np.linspace(1.0, 0.5, k, dtype=np.float32), ids.shape).copy()
    moe_layers = list(range(1, L + 1)) if moe_layers is None else moe_layers
    model = {"name": name, "architecture": "llama", "n_layer": max(moe_layers) + 1, "moe_layers": moe_layers,
             "dense_layers": dense_layers if dense_layers is not None else [0],
             "n_expert": E, "n_expert_used": k, "total_params": 10, "active_params": 5, "gating": "softmax"}
    token_ids = list(range(n)) if token_ids is None else token_ids
    texts = texts or [f"t{i}" for i in token_ids]
    tokens = [{"id": int(i), "text": s, "prompt": j < n_prompt} for j, (i, s) in enumerate(zip(token_ids, texts))]
    return Trace(model, "p", {}, tokens, ids, np.asarray(weights, np.float32),
                 None if probs is None else np.asarray(probs, np.float32)).validate()


def routing(*a, tokens="all", **kw):
    return A.select_tokens(make_trace(*a, **kw), tokens)


def test_uniform_routing_is_perfectly_balanced():
    r = routing([[0, 1], [2, 3]] * 5, E=4)
    b = A.load_balance(r)
    assert b["cv"][0] == 0 and b["normalized_entropy"][0] == pytest.approx(1) and b["max_violation"][0] == 0
    assert b["jain_index"][0] == pytest.approx(1) and b["gini"][0] == pytest.approx(0)
    assert b["top_share_experts"] == 1 and b["top_share"][0] == pytest.approx(0.25)
    # Uniform random top-2 of 4 over 10 tokens: each count ~ Binomial(10, 1/2), CV = sqrt(0.5 / 5)
    assert b["cv_random"][0] == pytest.approx(math.sqrt(0.1))
    assert A.dormant_experts(r)["total"] == 0


def test_collapsed_routing():
    n = 6
    r = routing([[0, 1]] * n, E=4)
    b = A.load_balance(r)
    # counts [6, 6, 0, 0]: mean 3, std 3
    assert b["cv"][0] == pytest.approx(1) and b["max_violation"][0] == pytest.approx(1)
    assert b["normalized_entropy"][0] == pytest.approx(math.log(2) / math.log(4))
    assert b["jain_index"][0] == pytest.approx(12 ** 2 / (4 * 72))
    assert b["gini"][0] == pytest.approx(0.5) and b["top_share"][0] == pytest.approx(0.5)
    d = A.dormant_experts(r)
    assert d["per_layer"] == [[2, 3]] and d["total_fraction"] == 0.5
    assert A.utilization(r)["share"][0].tolist() == [0.5, 0.5, 0, 0]


def test_one_expert_takes_everything():
    b = A.balance_metrics(np.array([[0, 0, 0, 12]]), k=1)
    # Gini of one nonzero among E is (E - 1) / E; Jain's index is 1 / E
    assert b["gini"][0] == pytest.approx(0.75) and b["jain_index"][0] == pytest.approx(0.25)
    assert b["max_violation"][0] == pytest.approx(3) and b["normalized_entropy"][0] == 0


def test_saturation_curve_against_uniform_expectation():
    # top-1 routing of 4 experts: 0 0 1 0 2 -> first uses at tokens 0, 2, 4; expert 3 never
    r = routing([[0], [0], [1], [0], [2]], E=4)
    s = A.saturation_curve(r, per_layer=True)
    assert s["tokens"].tolist() == [1, 2, 3, 4, 5]
    assert s["dormant_fraction"].tolist() == [0.75, 0.75, 0.5, 0.5, 0.25]
    assert s["uniform_expected"] == pytest.approx([0.75 ** t for t in range(1, 6)])
    assert s["per_layer"][0].tolist() == [0.75, 0.75, 0.5, 0.5, 0.25]


def test_saturation_grid_is_log_spaced_and_ends_at_n():
    g = A.balance.token_grid(10_000, 20)
    assert g[0] == 1 and g[-1] == 10_000 and (np.diff(g) > 0).all() and len(g) <= 21


def test_top1_is_the_largest_weight_not_the_first_listed():
    w = [[[0.2, 0.7, 0.1]], [[0.5, 0.5, 0.1]], [[0.9, 0.05, 0.05]]]
    r = routing([[5, 6, 7], [1, 2, 3], [4, 0, 1]], E=8, weights=w)
    assert A.routing_map(r)["top1"][:, 0].tolist() == [6, 1, 4]      # a tie goes to the first listed


def test_alternating_experts_never_repeat():
    n = 10
    r = routing([[i % 2] for i in range(n)], E=2)
    c = A.consecutive_repetition(r)
    assert c["pairs"] == 9 and c["top1_repeat"][0] == 0 and c["top1_repeat_uniform"] == 0.5
    # shuffled order: a random pair of distinct tokens shares its expert with prob 2 * 5 * 4 / (10 * 9)
    assert c["top1_repeat_shuffled"][0] == pytest.approx(40 / 90)
    same = A.consecutive_repetition(routing([[3]] * 5, E=4))
    assert same["top1_repeat"][0] == 1 and same["top1_repeat_shuffled"][0] == 1


def test_topk_overlap_of_a_sliding_window():
    # {0,1} {1,2} {2,3} {3,0} ...: each token keeps one of the previous token's two experts
    r = routing([[i % 4, (i + 1) % 4] for i in range(8)], E=4)
    c = A.consecutive_repetition(r)
    assert c["topk_overlap"][0] == pytest.approx(0.5) and c["topk_overlap_uniform"] == 0.5
    assert c["topk_overlap_shuffled"][0] == pytest.approx(4 * 4 * 3 / (8 * 7) / 2)


@pytest.mark.parametrize("E", [8, 64, 65, 130, 256, 300])
def test_overlap_and_counts_match_brute_force_across_chunks(E, monkeypatch):
    monkeypatch.setattr(tallies_module, "CHUNK_ASSIGNMENTS", 40)      # many chunks of a few rows
    rng = np.random.default_rng(E)
    n, L, k = 57, 3, 4
    ids = np.stack([np.stack([rng.choice(E, k, replace=False) for _ in range(L)]) for _ in range(n)])
    w = rng.random((n, L, k)).astype(np.float32)
    w[:20] = np.sort(w[:20], axis=-1)[..., ::-1]                     # some chunks descending, some not
    tal = A.tally(routing(ids, E=E, weights=w))
    for i in range(L):
        assert tal.counts[i].tolist() == np.bincount(ids[:, i].ravel(), minlength=E).tolist()
        assert tal.overlap[i] == sum(len(set(ids[t, i]) & set(ids[t + 1, i])) for t in range(n - 1))
        first = [next((t for t in range(n) if e in ids[t, i]), -1) for e in range(E)]
        assert tal.first_use[i].tolist() == first
        assert tal.top1[:, i].tolist() == ids[np.arange(n), i, np.argmax(w[:, i], axis=1)].tolist()


def test_coactivation_counts_and_conditional_shares():
    r = routing([[0, 1], [0, 1], [0, 2]], E=3)
    c = A.coactivation(r, layer=1)
    assert c["counts"].tolist() == [[3, 2, 1], [2, 2, 0], [1, 0, 1]]
    assert c["conditional"][0, 1] == pytest.approx(2 / 3) and c["conditional"][1, 0] == 1
    assert c["uniform"] == pytest.approx(1 / 2)
    assert c["top_pairs"][0] == {"experts": [0, 1], "tokens": 2, "share_of_first": pytest.approx(2 / 3),
                                 "share_of_second": 1.0}


def test_transitions_between_adjacent_layers():
    # top-1 at layer 1: 0 0 1 1; at layer 2: 1 1 0 0 -> fully determined, one bit of information
    r = routing([[[0], [1]], [[0], [1]], [[1], [0]], [[1], [0]]], E=2)
    t = A.layer_transitions(r, 1)
    assert t["next_layer"] == 2 and t["counts"].tolist() == [[0, 2], [2, 0]]
    s = A.transition_summary(r)
    assert s["pairs"] == [[1, 2]] and s["mutual_information_bits"][0] == pytest.approx(1)
    assert s["predictability"][0] == 1 and s["predictability_baseline"][0] == 0.5
    # Shuffling layer 2 over the 4 tokens keeps both distributions and breaks the pairing.
    assert 0 <= s["mutual_information_shuffled"][0] < 1 and 0.5 <= s["predictability_shuffled"][0] < 1
    with pytest.raises(A.AnalysisError, match="last MoE layer"):
        A.layer_transitions(r, 2)


def test_expert_token_profile_lift():
    # tokens a a b a b b a b; expert 3 is selected for every "a" and for the first "b"
    ids = [[3, 0], [3, 0], [3, 1], [3, 0], [0, 1], [0, 1], [3, 1], [0, 1]]
    tok = [1, 1, 2, 1, 2, 2, 1, 2]
    r = routing(ids, E=4, token_ids=tok, texts=["a" if t == 1 else "b" for t in tok])
    p = A.expert_token_profile(r, layer=1, expert=3)
    assert p["tokens_routed"] == 5 and p["share_of_tokens"] == 5 / 8
    a, b = p["top"]
    assert (a["text"], a["count"], a["routed_share"]) == ("a", 4, 1.0) and a["lift"] == pytest.approx((4 / 5) / (4 / 8))
    assert (b["text"], b["count"]) == ("b", 1) and b["lift"] == pytest.approx((1 / 5) / (4 / 8))
    assert A.expert_token_profile(r, layer=1, expert=2)["top"] == []       # dormant expert


def test_vocabulary_specialization():
    # token 5 (x4) always top-1 expert 2; token 7 (x4) goes 0 0 1 3; token 9 once
    ids = [[2], [0], [2], [0], [2], [1], [2], [3], [1]]
    tok = [5, 7, 5, 7, 5, 7, 5, 7, 9]
    s = A.vocabulary_specialization(routing(ids, E=4, token_ids=tok), min_count=4)
    assert s["tokens"] == 2 and s["occurrences"] == 8
    assert s["share"][0] == pytest.approx((4 + 2) / 8)
    assert [t["id"] for t in s["most_specialized"]] == [5, 7] and s["most_specialized"][0]["mean_share"] == 1
    assert 0.25 <= s["uniform_baseline"] <= 1 and 0 < s["shuffled_baseline"][0] <= 1
    assert A.vocabulary_specialization(routing(ids, E=4, token_ids=tok), min_count=5)["tokens"] == 0


def test_specialization_baseline_of_a_frequent_token_is_near_one_over_e():
    r = routing([[i % 4] for i in range(4000)], E=4, token_ids=[1] * 4000)
    s = A.vocabulary_specialization(r)
    assert s["share"][0] == pytest.approx(0.25) and 0.25 < s["uniform_baseline"] < 0.27


def test_specialization_of_a_collapsed_layer_is_no_more_than_its_shuffled_baseline():
    # every token goes to expert 1: share 1 for every token, and 1 when shuffled too
    r = routing([[1]] * 40, E=4, token_ids=[i % 4 for i in range(40)])
    s = A.vocabulary_specialization(r)
    assert s["share"][0] == 1 and s["shuffled_baseline"][0] == 1 and s["uniform_baseline"] < 1


def test_router_confidence():
    p = [[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]]
    r = routing([[0, 1], [2, 3]], E=4, probs=np.asarray(p)[:, None, :])
    c = A.router_confidence(r)
    h0 = -sum(x * math.log(x) for x in p[0]) / math.log(4)
    assert c["scores_are_probabilities"] and c["top1"]["mean"][0] == pytest.approx((0.5 + 0.25) / 2)
    assert c["margin"]["mean"][0] == pytest.approx((0.15 + 0) / 2)
    assert c["entropy"]["mean"][0] == pytest.approx((h0 + 1) / 2)
    with pytest.raises(A.AnalysisError, match="no router probabilities.*--probs"):
        A.router_confidence(routing([[0, 1]], E=4))


def test_lru_and_static_cache_hit_rates_worked_example():
    # top-1 of 4 experts: 0 1 0 2 1. Stack distances: cold, cold, 1 (one expert since), cold, 2.
    c = A.cache_hit_rates(routing([[0], [1], [0], [2], [1]], E=4))
    assert c["capacities"].tolist() == [1, 2, 3, 4]
    assert c["lru"][0].tolist() == [0, 1 / 5, 2 / 5, 2 / 5]
    assert c["compulsory_miss"] == 3 / 5
    # hottest sets: {0} or {1} (2 of 5), {0, 1} (4 of 5), all three used (5 of 5)
    assert c["static"][0].tolist() == [2 / 5, 4 / 5, 1, 1]


def test_lru_ties_within_a_token_follow_selection_order():
    # t0 selects 0 then 1, t1 selects 2 then 3. Before t2 the recency order is 2, 3, 0, 1:
    # with 3 experts cached, 0 is still there and 1 is not.
    h = A.stack_distances(routing([[0, 1], [2, 3], [1, 0]], E=4))
    assert h[0].tolist() == [0, 0, 1, 1, 4]                  # distances 2 (expert 0) and 3 (expert 1)
    c = A.cache_hit_rates(routing([[0, 1], [2, 3], [1, 0]], E=4), capacities=[3])
    assert c["lru"][0].tolist() == [1 / 6]


def brute_force_lru(ids, E):
    n, L, k = ids.shape
    hist = np.zeros((L, E + 1), np.int64)
    for i in range(L):
        stack = []
        for t in range(n):
            for e in ids[t, i]:
                hist[i, stack.index(e) if e in stack else E] += 1
            for e in reversed(ids[t, i]):     # the first-selected ends up most recent
                if e in stack:
                    stack.remove(e)
                stack.insert(0, e)
    return hist


@pytest.mark.parametrize("E, k, n", [(6, 2, 150), (16, 4, 150), (70, 8, 150), (256, 8, 400), (257, 5, 300),
                                     (300, 3, 150), (64, 64, 40), (128, 1, 2000)])
@pytest.mark.parametrize("path", ["compiled", "numpy"])
def test_lru_stack_distances_match_a_direct_simulation(E, k, n, path, monkeypatch):
    # 256 experts: the last that fit the kernel's uint8 ranks; 257 and 300: uint16 ranks;
    # k = E: every expert every token; k = 1: a long top-1 stream. Both passes: the
    # compiled one and numpy's for small traces.
    from moeviz.analysis import expert_cache

    monkeypatch.setattr(expert_cache, "SMALL_SWEEP", 0 if path == "compiled" else 1 << 62)
    rng = np.random.default_rng(E * 100 + k)
    popularity = rng.random(E) ** 3 + 0.01
    ids = np.stack([np.stack([rng.choice(E, k, replace=False, p=popularity / popularity.sum()) for _ in range(2)])
                    for _ in range(n)])
    assert A.stack_distances(routing(ids, E=E)).tolist() == brute_force_lru(ids, E).tolist()


def test_the_compiled_passes_run_where_numba_cannot_write_its_cache(monkeypatch):
    # a read-only install with no writable cache folder: numba refuses cache=True with a
    # RuntimeError at compile time; the passes must compile in the process instead
    import numba.core.caching
    from moeviz.analysis import cache_plan, expert_cache

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(expert_cache, "SMALL_SWEEP", 0)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    for getter in (expert_cache._kernel, cache_plan._kernels):
        getter.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="cannot cache"):     # what the fallback is for
            numba.njit(cache=True)(lambda x: x)(1)
        rng = np.random.default_rng(3)
        ids = np.stack([np.stack([rng.choice(12, 3, replace=False) for _ in range(2)]) for _ in range(60)])
        assert A.stack_distances(routing(ids, E=12)).tolist() == brute_force_lru(ids, 12).tolist()
        assert cache_plan.simulate(ids, 12, 4, "lru").sum() > 0
    finally:
        for getter in (expert_cache._kernel, cache_plan._kernels):
            getter.cache_clear()


@pytest.mark.parametrize("jobs, small", [(1, False), (2, False), (1, True)])
def test_a_token_that_selects_an_expert_twice_is_refused_not_counted(jobs, small, monkeypatch):
    # the stack pass relies on a token's experts being distinct; a hand-made trace may not
    # be. With 2 jobs the second layer's worker finds it and the error crosses the process.
    from moeviz.analysis import expert_cache, parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL_ASSIGNMENTS", 0)
    monkeypatch.setattr(expert_cache, "SMALL_SWEEP", 1 << 62 if small else 0)
    ids = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 3]]])
    with pytest.raises(A.AnalysisError, match=r"token 1 selects one expert twice at MoE layer 2 \(\[3, 3\]\)"):
        A.stack_distances(routing(ids, E=4), jobs=jobs)


@pytest.mark.parametrize("L, jobs", [(5, 2), (7, 3), (1, 4)])
def test_layer_parallel_passes_give_the_same_numbers(L, jobs, monkeypatch):
    """Tallies computed by forked workers over token ranges, and LRU stack distances and
    the shuffled baselines over layer ranges (parallel.py), equal the one-process
    results: first uses, overlaps of the pairs that straddle two ranges, top-1 order."""
    from moeviz.analysis import expert_cache, parallel, tallies

    monkeypatch.setattr(parallel, "MIN_PARALLEL_ASSIGNMENTS", 0)
    monkeypatch.setattr(expert_cache, "SMALL_SWEEP", 0)                  # the compiled pass, in workers
    monkeypatch.setattr(tallies, "CHUNK_ASSIGNMENTS", 64)     # several chunks per worker
    rng = np.random.default_rng(L)
    E, k, n = 70, 4, 300
    ids = np.stack([np.stack([rng.choice(E, k, replace=False) for _ in range(L)]) for _ in range(n)])
    weights = rng.random((n, L, k)).astype(np.float32)        # not sorted: top-1 needs the argmax path
    one, many = routing(ids, E=E, weights=weights), routing(ids, E=E, weights=weights)
    ranges = parallel.split(L, jobs)                            # contiguous, covering, balanced
    assert len(ranges) == min(jobs, L) and ranges[0][0] == 0 and ranges[-1][1] == L
    assert all(a < b for a, b in ranges) and all(b == a2 for (_, b), (a2, _) in zip(ranges, ranges[1:]))
    assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    serial, forked = A.tally(one), A.tally(many, jobs=jobs)
    for field in ("counts", "first_use", "top1_by_layer", "top1_counts", "overlap", "transitions"):
        np.testing.assert_array_equal(getattr(forked, field), getattr(serial, field), err_msg=field)
    np.testing.assert_array_equal(A.stack_distances(many, jobs=jobs), A.stack_distances(one))
    tok = [int(t) % 7 for t in range(n)]                       # token ids seen often enough to count
    one, many = routing(ids, E=E, weights=weights, token_ids=tok), routing(ids, E=E, weights=weights, token_ids=tok)
    assert A.to_json(A.vocabulary_specialization(many, min_count=5, jobs=jobs)) == \
        A.to_json(A.vocabulary_specialization(one, min_count=5))
    assert A.to_json(A.transition_summary(many, jobs=jobs)) == A.to_json(A.transition_summary(one))
    assert A.stack_distances(one).tolist() == brute_force_lru(ids, E).tolist()


def test_compare_traces_of_one_model():
    a = A.select_tokens(make_trace([[0], [1], [0]], E=4), name="a")
    b = A.select_tokens(make_trace([[1], [2]], E=4), name="b")
    c = A.compare_routings([a, b])
    assert c["pairs"][0]["traces"] == ["a", "b"] and c["pairs"][0]["jaccard"].tolist() == [1 / 3]
    assert c["dormant_in_all"] == [[3]] and c["dormant_per_trace"] == [2, 2]


def test_compare_refuses_different_models():
    a = A.select_tokens(make_trace([[0], [1]], E=4), name="a.json")
    b = A.select_tokens(make_trace([[0], [1]], E=8), name="b.json")
    with pytest.raises(A.AnalysisError, match="different models: a.json has n_expert 4, b.json has 8"):
        A.compare_routings([a, b])
    with pytest.raises(A.AnalysisError, match="at least two"):
        A.compare_routings([a])


def test_token_selection_and_empty_traces():
    t = make_trace([[0], [1], [2], [3]], E=4, n_prompt=3)
    assert A.select_tokens(t, "prompt").n_tokens == 3 and A.select_tokens(t, "generated").n_tokens == 1
    assert A.select_tokens(t, "generated").expert_ids[0, 0, 0] == 3
    with pytest.raises(A.AnalysisError, match="has no generated tokens"):
        A.select_tokens(make_trace([[0]], E=4, n_prompt=1), "generated")
    empty = make_trace(np.zeros((0, 1, 1), np.int32), E=4)
    with pytest.raises(A.AnalysisError, match="has no tokens"):
        A.select_tokens(empty, "all")
    with pytest.raises(A.AnalysisError, match="--tokens must be one of"):
        A.select_tokens(t, "some")


def test_layers_are_named_by_model_index_and_dense_layers_are_refused():
    r = routing([[[0], [1]]], E=4, moe_layers=[1, 3], dense_layers=[0, 2])
    assert A.coactivation(r, 3)["counts"][1, 1] == 1
    with pytest.raises(A.AnalysisError, match="layer 2 is a dense layer .* MoE layers are 1, 3"):
        A.coactivation(r, 2)
    with pytest.raises(A.AnalysisError, match="no MoE layer 7"):
        A.expert_token_profile(r, 7, 0)
    with pytest.raises(A.AnalysisError, match=r"expert 4 is outside \[0, 4\)"):
        A.expert_token_profile(r, 1, 4)


def test_a_single_token_has_no_consecutive_figures():
    s = A.trace_stats(make_trace([[0, 1]], E=4))
    assert s["locality"]["pairs"] == 0 and s["locality"]["top1_repeat"] == [None]
    assert json.loads(json.dumps(A.to_json(s)))["locality"]["topk_overlap"] == [None]


def test_to_json_turns_undefined_numbers_into_null():
    out = A.to_json({"a": np.array([1.0, np.nan]), "b": np.int64(3), "c": [np.float32(np.inf)], "d": np.array([True])})
    assert out == {"a": [1.0, None], "b": 3, "c": [None], "d": [True]}


def stats_args(*argv):
    p = argparse.ArgumentParser()
    stats_cli.add_stats_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["stats", *argv])


def test_cmd_stats_on_saved_trace_files(tmp_path, capsys):
    rng = np.random.default_rng(3)
    ids = np.stack([np.stack([rng.choice(8, 2, replace=False) for _ in range(3)]) for _ in range(30)])
    probs = rng.random((30, 3, 8)).astype(np.float32)
    save(make_trace(ids, E=8, n_prompt=10, probs=probs, token_ids=[i % 3 for i in range(30)]), tmp_path / "a.moetrace")
    save(make_trace(ids[:12], E=8, n_prompt=4), tmp_path / "b.json")
    assert stats_cli.cmd_stats(stats_args(str(tmp_path / "a.moetrace"))) == 0
    text = capsys.readouterr().out
    for part in ("a.moetrace: m (llama), 3 MoE layers x 8 experts, top-2", "tokens: all, 30 (10 prompt + 20 generated)",
                 "Load balance per MoE layer", "Dormant:", "Saturation", "Consecutive tokens", "transitions",
                 "Vocabulary specialization: 3 token ids", "Router confidence (softmax probabilities)",
                 "Expert cache"):
        assert part in text, part
    assert stats_cli.cmd_stats(stats_args(str(tmp_path / "a.moetrace"), str(tmp_path / "b.json"), "--json",
                                      "--tokens", "generated")) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["traces"]
    assert first["tokens"]["count"] == 20 and second["tokens"]["count"] == 8 and second["confidence"] is None
    assert first["balance"]["moe_layers"] == [1, 2, 3] and len(first["expert_cache"]["lru"][0]) == 8
    assert out["comparison"]["traces"] == [str(tmp_path / "a.moetrace"), str(tmp_path / "b.json")]
    assert len(out["comparison"]["pairs"][0]["jaccard"]) == 3
    for flags in ((), ("--no-cache-sim",)):
        assert stats_cli.cmd_stats(stats_args(str(tmp_path / "b.json"), "--json", *flags)) == 0
    full, skipped = (json.loads(line)["traces"][0] for line in capsys.readouterr().out.splitlines())
    assert full["expert_cache"] is not None and skipped["expert_cache"] is None
    assert {k: v for k, v in skipped.items() if k != "expert_cache"} == {k: v for k, v in full.items() if k != "expert_cache"}
    with pytest.raises(A.AnalysisError, match="--jobs must be at least 1"):
        stats_cli.cmd_stats(stats_args(str(tmp_path / "b.json"), "--jobs", "0"))


def test_cmd_stats_refuses_traces_of_different_models(tmp_path):
    save(make_trace([[0], [1]], E=4, name="one"), tmp_path / "a.json")
    save(make_trace([[0], [1]], E=4, name="other", n_prompt=2), tmp_path / "b.json")
    with pytest.raises(A.AnalysisError, match="cannot compare traces of different models: .*a.json has name 'one'"):
        stats_cli.cmd_stats(stats_args(str(tmp_path / "a.json"), str(tmp_path / "b.json")))
    with pytest.raises(A.AnalysisError, match="b.json has no generated tokens"):
        stats_cli.cmd_stats(stats_args(str(tmp_path / "b.json"), "--tokens", "generated"))


@pytest.mark.parametrize("E, k", [(1, 1), (4, 4)])
def test_degenerate_shapes_give_defined_or_null_figures(E, k):
    ids = [list(range(k))] * 5
    probs = np.full((5, 1, E), 1 / E)
    s = A.to_json(A.trace_stats(make_trace(ids, E=E, probs=probs)))
    assert s["balance"]["cv"] == [0.0] and s["locality"]["topk_overlap"] == [1.0]
    assert s["expert_cache"]["lru_overall"][-1] == pytest.approx(1 - k * 1 / (5 * k))
    assert s["confidence"]["margin"] is None and s["confidence"]["note"]
    if E == 1:
        assert s["balance"]["normalized_entropy"] == [None]
