"""Issue 15 on real llama.cpp runs: top-k overrides and masks recorded in traces, next-token
candidates from the logits, same-token replay (bit for bit on the same model), diff of a
Q8_0 replay against the F32 original, the CLI flags and the websocket fields."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from reference_llama import forward
from test_whatif import reference_diff

from moeviz.analysis.diff import diff_traces
from moeviz.engine import Engine, SamplingSettings, SettingsError
from moeviz.errors import Unavailable
from moeviz.record import ReplayError, record, replay_trace
from moeviz.trace import load, save

EXACT = dict(n_ctx=512, kv_type="f32", flash_attn="off")
PROMPT = "The quick brown fox jumps over the lazy dog, and then"
GREEDY = SamplingSettings(max_tokens=10, temperature=0.0)


@pytest.fixture(scope="module", params=["native", pytest.param("callback", marks=pytest.mark.slow)])  # callback: make test
def engine(request, fixture_models):
    e = Engine(fixture_models["llama"], capture=request.param, **EXACT)
    yield e
    e.close()


@pytest.fixture(scope="module")
def q8_model(fixture_models, tmp_path_factory):
    from moeviz.fixtures.quantize import quantize_gguf

    return quantize_gguf(fixture_models["llama"], tmp_path_factory.mktemp("q8") / "llama-q8_0.gguf", "Q8_0")


def test_a_top_k_override_is_recorded_and_its_trace_round_trips(engine, tmp_path):
    t = record(engine, PROMPT, GREEDY, experts_per_token=3, probs=True)
    assert t.settings["experts_per_token"] == 3 and t.k == 3 and t.expert_ids.shape[2] == 3
    assert t.model["n_expert_used"] == 2          # the model is described as it is
    np.testing.assert_allclose(t.weights.sum(-1), 1, rtol=1e-5)
    for name in ("k3.json", "k3.moetrace"):
        save(t, tmp_path / name)
        assert load(tmp_path / name).equals(t)
    # the next run that asks for nothing routes with the model's top-k again
    plain = record(engine, PROMPT, GREEDY)
    assert plain.k == 2 and plain.settings["experts_per_token"] == 2 and plain.settings["mask"] == []


@pytest.mark.parametrize("mask", ["*:1", "0:3,2:0,2:6,3:*"])
def test_a_masked_expert_never_appears(engine, mask):
    if mask.endswith("3:*"):
        with pytest.raises(SettingsError, match="layer 3 keeps 0 experts, fewer than the 2"):
            record(engine, PROMPT, GREEDY, mask=mask)
        mask = "0:3,2:0,2:6,3:4"
    t = record(engine, PROMPT, GREEDY, mask=mask, probs=True)
    pairs = [tuple(p) for p in t.settings["mask"]]
    assert pairs == t.mask and pairs
    for li, layer in enumerate(t.model["moe_layers"]):
        banned = [e for la, e in pairs if la == layer]
        assert not np.isin(t.expert_ids[:, li], banned).any()
        # the best unmasked experts by the router's own scores
        scores = t.probs[:, li].astype(np.float64)
        scores[:, banned] = -np.inf
        best = np.sort(np.argsort(-scores, -1, kind="stable")[:, :2], -1)
        np.testing.assert_array_equal(np.sort(t.expert_ids[:, li], -1), best)


def test_candidates_are_the_top_n_of_the_models_own_distribution(fixture_models):
    e = Engine(fixture_models["llama"], capture="native", **EXACT)
    try:
        t = record(e, PROMPT, GREEDY, candidates=6)
    finally:
        e.close()
    toks = [x["id"] for x in t.tokens]
    logits = forward(fixture_models["llama"], toks)[3]           # every position, float64
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert t.candidate_ids.shape == (len(toks), 6)
    assert set(t.candidate_texts) == set(np.unique(t.candidate_ids).tolist())
    for tok in t.tokens[1:]:      # a prompt token's text is its piece where it is one whole character
        if tok["id"] in t.candidate_texts and tok["text"].isascii() and tok["text"]:
            assert t.candidate_texts[tok["id"]] == tok["text"]
    for i in range(len(toks)):
        np.testing.assert_allclose(t.candidate_probs[i], p[i, t.candidate_ids[i]], atol=2e-4)
        # the listed ids are the 6 most probable (up to reference rounding at the cut)
        assert p[i, t.candidate_ids[i]].min() >= np.sort(p[i])[-6] - 2e-4
    # greedy decoding picks each position's first candidate
    gen = [i for i, x in enumerate(t.tokens) if not x["prompt"]]
    assert [toks[i] for i in gen] == [int(t.candidate_ids[i - 1, 0]) for i in gen]


def test_candidates_do_not_change_the_routing(engine):
    a = record(engine, PROMPT, GREEDY)
    b = record(engine, PROMPT, GREEDY, candidates=4)
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.candidate_ids is None and b.candidate_ids.shape == (b.n_tokens, 4)


def test_same_token_replay_on_the_same_model_is_bit_for_bit(engine):
    a = record(engine, PROMPT, SamplingSettings(max_tokens=12, temperature=0.9, seed=3), candidates=5, probs=True)
    b = replay_trace(engine, a, source_name="a.json", candidates=5, probs=True)
    assert [t["id"] for t in b.tokens] == [t["id"] for t in a.tokens]
    assert b.tokens == a.tokens
    np.testing.assert_array_equal(b.expert_ids, a.expert_ids)
    np.testing.assert_array_equal(b.weights, a.weights)
    np.testing.assert_array_equal(b.probs, a.probs)
    np.testing.assert_array_equal(b.candidate_ids, a.candidate_ids)
    np.testing.assert_array_equal(b.candidate_probs, a.candidate_probs)
    assert b.settings["tokens_from"] == {"trace": "a.json", "model": a.model["name"], "batches": "original"}
    d = diff_traces(a, b)
    assert d["overall"] == {"set_agreement": 1.0, "mean_jaccard": 1.0, "top1_agreement": 1.0, "weight_l1": 0.0}
    assert d["candidates"]["kl_mean"] == 0.0 and d["candidates"]["top1_agreement"] == 1.0
    fast = replay_trace(engine, a, fast=True)
    assert fast.settings["tokens_from"]["batches"] == "all at once"
    assert diff_traces(a, fast)["overall"]["mean_jaccard"] > 0.99


@pytest.mark.parametrize("k", [1, 3])
def test_replay_with_a_mask_and_another_top_k(engine, k):
    a = record(engine, PROMPT, GREEDY)
    b = replay_trace(engine, a, experts_per_token=k, mask="*:0")
    assert b.k == k and not (b.expert_ids == 0).any()
    np.testing.assert_allclose(b.weights.sum(-1), 1, rtol=1e-5)
    d = diff_traces(a, b)
    assert d["k"] == [2, k] and d["overall"]["set_agreement"] == 0.0
    if k == 1:   # the first MoE layer sees the same hidden states: its best unmasked expert
        top = np.take_along_axis(a.expert_ids[:, 0], a.weights[:, 0].argmax(-1)[:, None], -1)[:, 0]
        np.testing.assert_array_equal(b.expert_ids[top != 0, 0, 0], top[top != 0])
        return
    # the first MoE layer sees the same hidden states: its best experts other than 0 stay
    keep = a.expert_ids[:, 0] != 0
    assert all(set(a.expert_ids[t, 0][keep[t]]) <= set(b.expert_ids[t, 0]) for t in range(a.n_tokens))


@pytest.mark.slow
def test_q8_0_replay_diff_equals_an_independent_computation(fixture_models, q8_model):
    f32 = Engine(fixture_models["llama"], capture="native", **EXACT)
    try:
        a = record(f32, PROMPT, SamplingSettings(max_tokens=16, temperature=0.7, seed=5), candidates=8)
    finally:
        f32.close()
    q8 = Engine(q8_model, capture="native", **EXACT)
    try:
        b = replay_trace(q8, a, candidates=8)
    finally:
        q8.close()
    d = diff_traces(a, b, tokens=True)
    ref = reference_diff(a, b)
    for f in ("set_agreement", "mean_jaccard", "top1_agreement", "weight_l1"):
        np.testing.assert_allclose(d["per_layer"][f], ref[f], rtol=1e-9, atol=1e-12, err_msg=f)
    np.testing.assert_allclose(d["candidates"]["kl_mean"], ref["kl"], rtol=1e-9, atol=1e-15)
    assert d["candidates"]["top1_agreement"] == pytest.approx(ref["ctop1"])
    # a quantization drifts, but routes most tokens alike
    assert 0 < d["overall"]["weight_l1"] and d["overall"]["mean_jaccard"] > 0.5
    assert d["candidates"]["kl_mean"] > 0


@pytest.mark.slow
def test_replay_needs_the_same_vocabulary(engine, fixture_dir):
    from moeviz.fixtures import FixtureSpec, write_fixture

    path = write_fixture(fixture_dir / "llama-v600.gguf", FixtureSpec(arch="llama", n_vocab=600))
    other = Engine(path, capture="native", **EXACT)
    try:
        t = record(other, PROMPT, GREEDY)
    finally:
        other.close()
    with pytest.raises(ReplayError, match="600-token vocabulary, this one has 459: same-token replay needs the same"):
        replay_trace(engine, t, source_name="v600.json")
    # same size, another tokenizer: a token that reads differently
    t = record(engine, PROMPT, GREEDY)
    t.tokens[3] = {**t.tokens[3], "text": "zz"}
    with pytest.raises(ReplayError, match=r"token 3 \(id \d+\) reads 'zz' in a.json but"):
        replay_trace(engine, t, source_name="a.json")


def test_without_the_patched_library_an_intervention_is_one_clear_line(engine, monkeypatch):
    from moeviz.llama import interventions

    monkeypatch.setattr(interventions, "_api", lambda: None)
    with pytest.raises(Unavailable) as e:
        record(engine, PROMPT, GREEDY, experts_per_token=1)
    assert "need moeviz's patched llama.cpp" in str(e.value) and "\n" not in str(e.value)
    assert record(engine, PROMPT, GREEDY).k == 2          # a plain run needs nothing from the patch


@pytest.mark.slow
def test_cli_record_replay_and_diff(fixture_models, q8_model, tmp_path):
    m = fixture_models["llama"]
    common = ["--kv-type", "f32", "--flash-attn", "off", "--n-ctx", "512"]
    run_cli("record", "-m", m, "--prompt", PROMPT, "--max-tokens", "8", "--candidates", "5", "-o", tmp_path / "a.json",
            *common, check=True)
    r = run_cli("record", "-m", m, "--tokens-from", tmp_path / "a.json", "--candidates", "5",
                "-o", tmp_path / "b.moetrace", *common, check=True)
    assert "replayed" in r.stderr
    d = json.loads(run_cli("diff", tmp_path / "a.json", tmp_path / "b.moetrace", "--json", check=True).stdout)
    assert d["overall"]["set_agreement"] == 1.0 and d["candidates"]["kl_mean"] == 0.0
    r = run_cli("record", "-m", q8_model, "--tokens-from", tmp_path / "a.json", "--experts-per-token", "3",
                "--mask", "1:*,*:2", "-o", tmp_path / "c.json", *common)
    assert r.returncode == 1 and r.stderr == "moeviz record: error: mask: layer 1 keeps 0 experts, fewer than the 3 each token uses\n"
    run_cli("record", "-m", q8_model, "--tokens-from", tmp_path / "a.json", "--experts-per-token", "3",
            "--mask", "*:2", "--fast", "-o", tmp_path / "c.json", *common, check=True)
    c = load(tmp_path / "c.json")
    assert c.k == 3 and c.settings["tokens_from"]["batches"] == "all at once" and not (c.expert_ids == 2).any()
    out = run_cli("diff", tmp_path / "a.json", tmp_path / "c.json", "--tokens", check=True).stdout
    assert "top-2 vs top-3" in out and "masked: A none; B 0:2,1:2,2:2,3:2" in out
    # (run settings are checked as their flags are read, from moeviz/settings.py: argparse's exit status 2)
    for bad, words, status in ((["--mask", "1-2"], "is not LAYER:EXPERT", 1), (["--experts-per-token", "9"], "from 1 to 8", 1),
                               (["--candidates", "-1"], "'candidates' must be an integer from 0 to 1000", 2)):
        r = run_cli("record", "-m", m, "--prompt", "x", "-o", tmp_path / "x.json", *bad)
        assert r.returncode == status and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run_cli("record", "-m", m, "--tokens-from", tmp_path / "nope.json", "-o", tmp_path / "x.json")
    assert r.returncode == 1 and "trace file not found" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("record", "-m", m, "--prompt", "x", "--fast", "-o", tmp_path / "x.json")
    assert r.stderr == "moeviz record: error: --fast only applies to --tokens-from\n"


@pytest.mark.slow
def test_halving_top_k_on_the_cli(fixture_models, tmp_path):
    """deepseek2: top-4 of 16 -> 2 on the same tokens (in processes of their own: a
    llama.cpp abort must fail this test, not the session)."""
    ds, common = fixture_models["deepseek2"], ["--kv-type", "f32", "--flash-attn", "off", "--n-ctx", "512"]
    run_cli("record", "-m", ds, "--prompt", PROMPT, "--max-tokens", "6", "-o", tmp_path / "d4.json", *common, check=True)
    r = run_cli("record", "-m", ds, "--tokens-from", tmp_path / "d4.json", "--experts-per-token", "2",
                "-o", tmp_path / "d2.json", *common)
    assert r.returncode == 0, r.stderr.splitlines()[:3]
    d = json.loads(run_cli("diff", tmp_path / "d4.json", tmp_path / "d2.json", "--json", check=True).stdout)
    assert d["k"] == [4, 2] and 0 < d["overall"]["mean_jaccard"] <= 0.5


def test_websocket_runs_take_top_k_mask_and_candidates(fixture_models, tmp_path):
    from fastapi.testclient import TestClient

    from moeviz.server import ServerSettings, create_app
    from moeviz.trace.messages import TraceAssembler

    e = Engine(fixture_models["llama"], capture="native", **EXACT)
    try:
        app = create_app(e, ServerSettings(data_dir=tmp_path / "runs"))
        with TestClient(app) as c, c.websocket_connect("/ws") as ws:
            model = json.loads(ws.receive_text())

            def run(**req):
                ws.send_text(json.dumps({"type": "generate", "text": PROMPT, "max_tokens": 5, "temperature": 0.0, **req}))
                msgs = []
                while True:
                    m = json.loads(ws.receive_text())
                    if m["type"] in ("queued",):
                        continue
                    msgs.append(m)
                    if m["type"] in ("done", "error"):
                        return msgs

            msgs = run(experts_per_token=3, mask=[["*", 1], [2, 5]], candidates=4)
            assert [m["type"] for m in msgs][:2] == ["start", "prompt"] and msgs[-1]["type"] == "done"
            s = msgs[0]["settings"]
            assert s["experts_per_token"] == 3 and s["candidates"] == 4
            assert s["mask"] == [[0, 1], [1, 1], [2, 1], [2, 5], [3, 1]]
            assert all(len(row) == 3 for row in msgs[1]["expert_ids"][0])
            assert len(msgs[1]["candidates"]["ids"]) == len(msgs[1]["tokens"]) and len(msgs[2]["candidates"]["ids"]) == 4
            asm = TraceAssembler()
            for m in [model] + msgs:
                asm.add(m)
            t = asm.trace()
            assert t.k == 3 and not (t.expert_ids[:, :] == 1).any() and t.candidate_ids.shape == (t.n_tokens, 4)
            assert set(t.candidate_texts) == set(np.unique(t.candidate_ids).tolist())
            stored = c.get(msgs[-1]["permalink"].replace("/r/", "/api/runs/")).json()
            assert stored["settings"]["experts_per_token"] == 3 and len(stored["candidates"]["ids"]) == t.n_tokens
            # the next run that asks for nothing is the model's own routing
            plain = run()
            assert plain[0]["settings"]["experts_per_token"] == 2 and plain[0]["settings"]["mask"] == []
            assert "candidates" not in plain[1]
            for req, words in (({"experts_per_token": "3"}, "'experts_per_token' must be an integer"),
                               ({"mask": {"1": 2}}, "'mask' must be a list"),
                               ({"candidates": -2}, "'candidates' must be an integer from 0 to 1000, got -2"),
                               ({"experts_per_token": 9}, "experts per token must be an integer from 1 to 8"),
                               ({"mask": "0:*"}, "layer 0 keeps 0 experts"),
                               ({"mask": [[7, 1]]}, "layer 7 is not one of this model's MoE layers")):
                msgs = run(**req)
                assert msgs[-1]["type"] == "error" and words in msgs[-1]["message"], (req, msgs[-1])
            assert run()[-1]["type"] == "done"      # the connection stays usable
    finally:
        e.close()


def test_serve_defaults_apply_to_runs_that_ask_for_nothing(fixture_models, tmp_path):
    """serve --experts-per-token / --mask: the engine's own routing (Engine(experts_per_token,
    mask)); a request's fields override it for that run only."""
    from fastapi.testclient import TestClient

    from moeviz.server import ServerSettings, create_app

    e = Engine(fixture_models["llama"], capture="native", experts_per_token=3, mask="*:0", **EXACT)
    try:
        assert e.default_interventions == (3, [(layer, 0) for layer in e.info.moe_layers])
        with TestClient(create_app(e, ServerSettings(data_dir=tmp_path / "runs"))) as c, c.websocket_connect("/ws") as ws:
            ws.receive_text()

            def settings(**req):
                ws.send_text(json.dumps({"type": "generate", "text": PROMPT, "max_tokens": 2, **req}))
                start = json.loads(ws.receive_text())
                while json.loads(ws.receive_text())["type"] != "done":
                    pass
                return start["settings"]

            s = settings()
            assert s["experts_per_token"] == 3 and s["mask"] == [[layer, 0] for layer in e.info.moe_layers]
            s = settings(experts_per_token=2, mask=[])
            assert s["experts_per_token"] == 2 and s["mask"] == []
            assert settings()["experts_per_token"] == 3
    finally:
        e.close()


def test_serve_flags(fixture_models, tmp_path):
    from serverproc import ServerProcess

    with ServerProcess("--model", fixture_models["llama"], "--experts-per-token", "3", "--mask", "*:0,1:5",
                       "--data-dir", tmp_path / "runs") as s:
        assert "top-3 (model: top-2), 5 experts masked" in s.banner
    r = run_cli("serve", "--model", fixture_models["llama"], "--mask", "9:0", "--port", "1")
    assert r.returncode == 1 and "mask: layer 9 is not one of this model's MoE layers" in r.stderr
