"""`moeviz cache-plan` on traces recorded from the demo model: every policy's numbers
equal a plain per-expert simulation written here (sets and dicts, one access at a
time), and no policy beats Belady's bound."""
import json
import math

import numpy as np
import pytest

from moeviz.analysis import select_tokens
from moeviz.analysis.cache_plan import POLICIES, cache_plan, simulate
from tests.conftest import run_cli

pytestmark = pytest.mark.slow     # records five demo-model runs first: 40 s under load (make test, not test-fast)


@pytest.fixture(scope="module")
def demo_traces(tmp_path_factory):
    """The five bundled prompts through the demo model at temperature 0, saved as files."""
    from moeviz.demo import default_model_path
    from moeviz.engine import Engine, SamplingSettings
    from moeviz.prompts import load_prompts
    from moeviz.record import record
    from moeviz.trace import save

    folder = tmp_path_factory.mktemp("demo-traces")
    engine = Engine(default_model_path(), n_ctx=512)
    paths = []
    try:
        for p in load_prompts().values():
            t = record(engine, p.prompt, SamplingSettings(max_tokens=48, temperature=0.0).validate())
            paths.append(save(t, folder / f"{p.name}.moetrace"))
    finally:
        engine.close()
    return paths


def _ids(paths):
    from moeviz.trace import load

    return [load(p).expert_ids.astype(int) for p in paths]


def reference(train, test, E, N, policy, lam=0.0):
    """Hits per MoE layer on the test tokens: a cache per layer as a Python set, warmed on
    the training tokens; each miss evicts one cached expert the token does not use."""
    stream = [*(t for ids in train for t in ids), *(t for ids in test for t in ids)]
    scored_from = sum(len(ids) for ids in train)
    L, k = stream[0].shape
    hits = [0] * L
    for li in range(L):
        cache, last, count, history = set(), {}, {}, {}
        for t, row in enumerate(stream):
            S = [int(e) for e in row[li]]
            for p, e in enumerate(S):                  # the first-selected counts as the most recent
                last[e] = t * k + (k - 1 - p)
                count[e] = count.get(e, 0) + 1
                history.setdefault(e, []).append(t)
            for e in S:
                if e in cache:
                    hits[li] += t >= scored_from
                    continue
                if len(cache) == N:
                    def score(x):
                        if policy == "lru":
                            return (last[x],)
                        if policy == "lfu":
                            return (count[x], last[x])
                        return (sum(2.0 ** (-lam * (t - u)) for u in history[x]), last[x])
                    cache.remove(min((x for x in cache if x not in S), key=score))
                cache.add(e)
    return hits


def reference_static(train, test, E, N):
    L = test[0].shape[1]
    hits = [0] * L
    for li in range(L):
        counts = [0] * E
        for ids in train:
            for e in ids[:, li].reshape(-1):
                counts[e] += 1
        chosen = set(sorted(range(E), key=lambda e: (-counts[e], e))[:N])
        hits[li] = sum(int(e) in chosen for ids in test for e in ids[:, li].reshape(-1))
    return hits


def reference_belady(test, E, N):
    """Keep, after each token, the N experts of cache + token whose next use comes first."""
    stream = [t for ids in test for t in ids]
    L = stream[0].shape[0]
    hits = [0] * L
    for li in range(L):
        seq = [set(int(e) for e in row[li]) for row in stream]

        def next_use(e, after):
            return next((u for u in range(after, len(seq)) if e in seq[u]), len(seq))

        cache = set(sorted(range(E), key=lambda e: (next_use(e, 0), e))[:N])
        for t, S in enumerate(seq):
            hits[li] += len(S & cache)
            cache = set(sorted(cache | S, key=lambda e: (next_use(e, t + 1), e))[:N])
    return hits


@pytest.mark.slow
def test_every_policy_equals_a_plain_simulation_and_belady_bounds_them(demo_traces):
    train_paths, test_paths = demo_traces[:2], demo_traces[2:]
    from moeviz.trace import load

    train = [select_tokens(load(p)) for p in train_paths]
    test = [select_tokens(load(p)) for p in test_paths]
    E, k = test[0].n_expert, test[0].k
    tr, te = _ids(train_paths), _ids(test_paths)
    accesses = sum(len(ids) for ids in te) * k
    for N in (k, 16, 40):
        plan = cache_plan(train, test, N)
        assert plan["budget"] == N
        pol = plan["policies"]
        lam = pol["lrfu"]["lambda"]
        expected = {"lru": reference(tr, te, E, N, "lru"), "lfu": reference(tr, te, E, N, "lfu"),
                    "lrfu": reference(tr, te, E, N, "lrfu", lam), "static": reference_static(tr, te, E, N),
                    "belady": reference_belady(te, E, N)}
        for name in POLICIES:
            assert pol[name]["per_layer"] == [h / accesses for h in expected[name]], (name, N)
            assert math.isclose(pol[name]["hit_rate"], sum(expected[name]) / (accesses * len(expected[name])))
        for name in POLICIES:
            assert pol[name]["hit_rate"] <= pol["belady"]["hit_rate"], (name, N)
            assert all(a <= b for a, b in zip(pol[name]["per_layer"], pol["belady"]["per_layer"]))
        assert plan["recommendation"] in ("lru", "lfu", "lrfu", "static")
    # the gap the issue names: 16 of 64 cached, a real spread between the policies and the bound
    assert pol["belady"]["hit_rate"] > pol["lru"]["hit_rate"]


@pytest.mark.slow
def test_lrfu_at_lambda_0_is_lfu(demo_traces):
    ids = np.concatenate(_ids(demo_traces[:3]))
    for N in (4, 12):
        assert (simulate(ids, 64, N, "lrfu", lam=0.0) == simulate(ids, 64, N, "lfu")).all()


def test_prefetch_figures_by_hand(demo_traces):
    from moeviz.trace import load

    train = [select_tokens(load(p)) for p in demo_traces[:2]]
    test = [select_tokens(load(p)) for p in demo_traces[2:3]]
    f = cache_plan(train, test, 16)["prefetch"]
    ids = test[0].expert_ids
    n, L, k = ids.shape
    shared = sum(len(set(ids[t, li]) & set(ids[t - 1, li])) for t in range(1, n) for li in range(L))
    assert f["previous_token"] == pytest.approx(shared / ((n - 1) * L * k))
    w4 = sum(len(set(ids[t, li]) & set(ids[max(0, t - 4):t, li].reshape(-1))) for t in range(1, n) for li in range(L))
    assert f["within_last"][4] == pytest.approx(w4 / ((n - 1) * L * k))
    assert 0 < f["previous_layer"] <= 1 and len(f["previous_layer_per_layer"]) == L - 1


def test_cli_table_json_and_budget_in_mib(demo_traces):
    from moeviz.demo import default_model_path
    from moeviz.gguf_info import read_model_info

    args = ["--train", *map(str, demo_traces[:2]), "--test", *map(str, demo_traces[2:])]
    r = run_cli("cache-plan", *args, "--budget", "16", "--json", check=True)
    d = json.loads(r.stdout)
    assert d["budget"] == 16 and set(d["policies"]) == set(POLICIES)
    assert set(d["policies"]["lru"]) >= {"hit_rate", "per_layer"} and len(d["policies"]["lru"]["per_layer"]) == 6
    text = run_cli("cache-plan", *args, "--budget", "16", check=True).stdout
    assert "Belady (offline bound)" in text and "Recommendation:" in text and "--n-cpu-moe" in text
    info = read_model_info(default_model_path())
    per_expert = info.expert_bytes / (len(info.moe_layers) * info.n_expert)
    mib = 20 * per_expert * len(info.moe_layers) / 2**20          # room for 20 experts per layer
    d = json.loads(run_cli("cache-plan", *args, "--budget", f"{mib + 0.01:.2f}MiB", "--model",
                           str(default_model_path()), "--json", check=True).stdout)
    assert d["budget"] == 20 and d["llama_cpp"]["gpu_layers"] == 20 * 6 // 64
    for bad, msg in ((["--budget", "2"], "at least 4"), (["--budget", "12MiB"], "needs --model"),
                     (["--budget", "lots"], "neither a number")):
        r = run_cli("cache-plan", *args, *bad)
        assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
