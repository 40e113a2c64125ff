"""Issue 15 without a model: traces with another top-k, a mask and next-token
candidates (schema, both file forms, messages), mask syntax, candidate extraction and
the diff's figures against an independent numpy computation of docs/analysis.md."""
from __future__ import annotations

import json

import numpy as np
import pytest

from moeviz.analysis import AnalysisError
from moeviz.analysis.diff import diff_traces
from moeviz.engine import SettingsError
from moeviz.engine.candidates import top_candidates
from moeviz.engine.masks import parse_mask
from moeviz.trace import Trace, TraceFormatError, load, loads, save
from moeviz.trace.io import to_binary, to_json_dict

MOE = [1, 2, 3]


def make_trace(n=6, k=2, E=8, model_k=4, mask=(), N=5, seed=0, vocab=50, probs=False, ids=None, tokens=None):
    rng = np.random.default_rng(seed)
    L = len(MOE)
    banned = {(la, e) for la, e in mask}
    rows = []
    for _ in range(n):
        row = []
        for layer in MOE:
            allowed = [e for e in range(E) if (layer, e) not in banned]
            row.append(rng.choice(allowed, k, replace=False))
        rows.append(row)
    ids = np.asarray(rows, np.int32).reshape(n, L, k) if ids is None else ids
    w = rng.random((n, L, k)).astype(np.float32)
    model = {"name": "t", "architecture": "llama", "n_layer": 4, "moe_layers": MOE, "n_expert": E,
             "n_expert_used": model_k, "total_params": 10, "active_params": 5, "n_vocab": vocab}
    settings = {"seed": 1, "experts_per_token": k, "mask": [list(p) for p in mask], "candidates": N}
    tokens = tokens if tokens is not None else [{"id": i % vocab, "text": f"t{i}", "prompt": i < 3} for i in range(n)]
    cid = cp = None
    if N:
        cid, cp = top_candidates(rng.normal(size=(n, vocab)), N) if n else (np.zeros((0, N), np.int32),
                                                                             np.zeros((0, N), np.float32))
    p = rng.random((n, L, E)).astype(np.float32) if probs else None
    return Trace(model, "hi", settings, tokens, ids, w, p, {"reason": "length"}, {"created": "x"}, cid, cp)


@pytest.mark.parametrize("name", ["t.json", "t.moetrace"])
def test_a_trace_with_another_top_k_a_mask_and_candidates_round_trips(tmp_path, name):
    t = make_trace(k=2, model_k=4, mask=[(1, 0), (3, 5)], probs=True)
    t.candidate_texts = {int(i): f"w{i} é" for i in np.unique(t.candidate_ids)}
    t.validate()
    assert t.k == 2 and t.expert_ids.shape[2] == 2
    save(t, tmp_path / name)
    back = load(tmp_path / name)
    assert back.equals(t) and back.k == 2 and back.mask == [(1, 0), (3, 5)]
    assert back.candidate_ids.dtype == np.int32 and back.candidate_probs.dtype == np.float32
    assert back.candidate_texts == t.candidate_texts
    t.candidate_texts.pop(int(t.candidate_ids[2, 1]))
    with pytest.raises(TraceFormatError, match=f"candidates.texts has no text for candidate token {t.candidate_ids[2, 1]}"):
        t.validate()
    np.testing.assert_array_equal(back.candidate_ids, t.candidate_ids)


def test_binary_form_holds_the_candidates_as_documented_arrays():
    t = make_trace(N=3)
    buf = to_binary(t)
    hlen = int.from_bytes(buf[8:12], "little")
    header = json.loads(buf[12:12 + hlen])
    assert header["arrays"]["candidate_ids"]["dtype"] == "int32"
    assert header["arrays"]["candidate_probs"]["shape"] == [6, 3]
    assert "candidates" not in header
    assert loads(buf).equals(t)


def test_an_empty_trace_with_top_k_override_and_candidates_reads_back():
    t = make_trace(n=0, k=3, N=4, tokens=[])
    t.validate()
    assert loads(json.dumps(to_json_dict(t)).encode()).expert_ids.shape == (0, 3, 3)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["settings"].update(experts_per_token=9), "settings.experts_per_token must be an integer from 1 to 8"),
    (lambda d: d["settings"].update(experts_per_token=4), "routing.expert_ids has shape [6, 3, 2], expected [6, 3, 4]"),
    (lambda d: d["settings"].update(mask=[[0, 1]]), "settings.mask[0]: layer 0 is not in model.moe_layers"),
    (lambda d: d["settings"].update(mask=[[1, 8]]), "settings.mask[0]: expert 8 is outside [0, 8)"),
    (lambda d: d["settings"].update(mask=[1, 2]), "settings.mask[0] must be a [layer, expert] pair"),
    (lambda d: d["settings"].update(mask=[[2, d["routing"]["expert_ids"][4][1][1]]]), "is masked (settings.mask has [2, "),
    (lambda d: d["candidates"]["ids"][2].__setitem__(0, 50), "candidates.ids[2][0] = 50 is outside [0, 50)"),
    (lambda d: d["candidates"]["probs"][1].__setitem__(3, 1.5), "candidates.probs[1][3] = 1.5 is not a probability"),
    (lambda d: d["candidates"]["probs"].pop(), "candidates.probs has shape [5, 5], expected [6, N]"),
    (lambda d: d["candidates"].pop("probs"), "candidates must be an object with 'ids' and 'probs'"),
    (lambda d: d["candidates"]["ids"][0].__setitem__(1, 2.5), "candidates.ids must "),
    (lambda d: d["candidates"]["ids"][3].__setitem__(1, d["candidates"]["ids"][3][4]), "candidates.ids[3] lists token"),
])
def test_bad_interventions_and_candidates_are_named(change, words):
    d = to_json_dict(make_trace())
    d = json.loads(json.dumps(d))
    change(d)
    with pytest.raises(TraceFormatError) as e:
        loads(json.dumps(d).encode())
    assert words in str(e.value)


def test_a_masked_expert_in_the_routing_is_refused():
    t = make_trace(mask=[(2, 3)])
    t.expert_ids[1, 1, 0] = 3
    with pytest.raises(TraceFormatError, match=r"routing.expert_ids\[1\]\[1\]\[0\] = 3 is masked"):
        t.validate()


def test_messages_rebuild_a_trace_with_k_prime_and_candidates():
    from moeviz.capture.routing import BatchRouting
    from moeviz.engine.events import Finished, PromptRouted, TokenInfo, TokenRouted
    from moeviz.trace.messages import TraceAssembler, event_message, model_message, start_message

    t = make_trace()
    asm = TraceAssembler()
    asm.add(model_message(t.model))
    asm.add(start_message("r", t.prompt, t.settings))
    n_p = t.n_prompt
    infos = [TokenInfo(x["id"], x["text"], x["prompt"]) for x in t.tokens]
    asm.add(json.loads(json.dumps(event_message(PromptRouted(infos[:n_p], BatchRouting(
        t.expert_ids[:n_p], t.weights[:n_p], None, t.candidate_ids[:n_p], t.candidate_probs[:n_p]), 0.1)))))
    for i in range(n_p, t.n_tokens):
        r = BatchRouting(t.expert_ids[i:i + 1], t.weights[i:i + 1], None, t.candidate_ids[i:i + 1],
                         t.candidate_probs[i:i + 1])
        asm.add(json.loads(json.dumps(event_message(TokenRouted(i, infos[i], r, 0.01)))))
    asm.add(json.loads(json.dumps(event_message(Finished("length", n_p, t.n_tokens - n_p, 0.1, 0.1)))))
    back = asm.trace()
    assert back.k == 2
    np.testing.assert_array_equal(back.expert_ids, t.expert_ids)
    np.testing.assert_array_equal(back.candidate_ids, t.candidate_ids)
    np.testing.assert_allclose(back.candidate_probs, t.candidate_probs, atol=1e-6)


# ---- mask syntax ----------------------------------------------------------------------

def test_mask_syntax_expands_stars():
    assert parse_mask("1:3, 2:0", MOE, 4) == [(1, 3), (2, 0)]
    assert parse_mask("2:*", MOE, 3) == [(2, 0), (2, 1), (2, 2)]
    assert parse_mask("*:1", MOE, 4) == [(1, 1), (2, 1), (3, 1)]
    assert parse_mask([[1, "*"], ["*", 0]], MOE, 2) == [(1, 0), (1, 1), (2, 0), (3, 0)]
    assert parse_mask(None, MOE, 4) == [] and parse_mask("", MOE, 4) == []


@pytest.mark.parametrize("spec, words", [("1-3", "is not LAYER:EXPERT"), ("a:1", "layer 'a'"), ("1:x", "expert 'x'"),
                                         ("*:*", "every expert"), ([[1, True]], "mask[0] must be"), (5, "mask must be")])
def test_bad_masks_say_why(spec, words):
    with pytest.raises(SettingsError) as e:
        parse_mask(spec, MOE, 4)
    assert words in str(e.value)


# ---- candidates -------------------------------------------------------------------------

def test_candidates_are_the_softmax_top_n_in_order():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 40)).astype(np.float32)
    logits[2, [5, 9, 11]] = 4.0            # a tie at the top: lower ids first
    ids, probs = top_candidates(logits, 4)
    p = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for r in range(7):
        order = sorted(range(40), key=lambda i: (-p[r, i], i))[:4]
        assert ids[r].tolist() == order
        np.testing.assert_allclose(probs[r], p[r, order], rtol=1e-6)
    assert ids[2, :3].tolist() == [5, 9, 11]
    full_ids, full_p = top_candidates(logits, 40)
    np.testing.assert_allclose(full_p.sum(1), 1, rtol=1e-5)


# ---- diff ---------------------------------------------------------------------------------

def reference_diff(a: Trace, b: Trace) -> dict:
    """docs/analysis.md "Diff", written out with dense per-expert vectors and loops."""
    n, L, E = a.n_tokens, len(a.model["moe_layers"]), a.model["n_expert"]
    same = np.zeros((n, L)); jac = np.zeros((n, L)); top1 = np.zeros((n, L)); l1 = np.zeros((n, L))
    for t in range(n):
        for li in range(L):
            sa, sb = set(a.expert_ids[t, li].tolist()), set(b.expert_ids[t, li].tolist())
            same[t, li] = sa == sb
            jac[t, li] = len(sa & sb) / len(sa | sb)
            ta = a.expert_ids[t, li][int(np.argmax(a.weights[t, li]))]
            tb = b.expert_ids[t, li][int(np.argmax(b.weights[t, li]))]
            top1[t, li] = ta == tb
            va, vb = np.zeros(E), np.zeros(E)
            va[a.expert_ids[t, li]] = a.weights[t, li]
            vb[b.expert_ids[t, li]] = b.weights[t, li]
            l1[t, li] = np.abs(va - vb).sum()
    kl, ctop = [], []
    for t in range(n):
        pa = dict(zip(a.candidate_ids[t].tolist(), a.candidate_probs[t].astype(float).tolist()))
        pb = dict(zip(b.candidate_ids[t].tolist(), b.candidate_probs[t].astype(float).tolist()))
        common = [i for i in pa if i in pb]
        P = [pa[i] for i in common] + [max(0.0, 1 - sum(pa[i] for i in common))]
        Q = [pb[i] for i in common] + [max(0.0, 1 - sum(pb[i] for i in common))]
        kl.append(sum(p * np.log(p / max(q, 1e-12)) for p, q in zip(P, Q) if p > 0))
        ctop.append(a.candidate_ids[t, 0] == b.candidate_ids[t, 0])
    return {"set_agreement": same.mean(0), "mean_jaccard": jac.mean(0), "top1_agreement": top1.mean(0),
            "weight_l1": l1.mean(0), "kl": np.mean(kl), "ctop1": np.mean(ctop), "kl_max": np.max(kl)}


@pytest.mark.parametrize("kb", [2, 3])
def test_diff_figures_equal_the_definitions(kb):
    a = make_trace(n=40, k=2, seed=1, N=6)
    b = make_trace(n=40, k=kb, seed=2, N=4)
    for t in range(10):                                  # some agreement (distinct experts in every row)
        for li in range(len(MOE)):
            rest = [e for e in range(8) if e not in a.expert_ids[t, li]]
            b.expert_ids[t, li] = (list(a.expert_ids[t, li]) + rest)[:kb]
    b.candidate_ids[:20] = a.candidate_ids[:20, [0, 2, 4, 5]]   # shared candidates, another order and mass
    b.validate()
    d = diff_traces(a, b, tokens=True)
    ref = reference_diff(a, b)
    for f in ("set_agreement", "mean_jaccard", "top1_agreement", "weight_l1"):
        np.testing.assert_allclose(d["per_layer"][f], ref[f], rtol=1e-9, err_msg=f)
        np.testing.assert_allclose(d["overall"][f], ref[f].mean(), rtol=1e-9)
    np.testing.assert_allclose(d["candidates"]["kl_mean"], ref["kl"], rtol=1e-9)
    np.testing.assert_allclose(d["candidates"]["kl_max"], ref["kl_max"], rtol=1e-9)
    assert d["candidates"]["top1_agreement"] == pytest.approx(ref["ctop1"])
    assert len(d["per_token"]) == 40 and d["k"] == [2, kb]


def test_diff_of_a_trace_with_itself_is_perfect_agreement():
    a = make_trace(n=20, N=5)
    d = diff_traces(a, a, tokens=True)
    assert d["overall"] == {"set_agreement": 1.0, "mean_jaccard": 1.0, "top1_agreement": 1.0, "weight_l1": 0.0}
    assert d["candidates"]["kl_mean"] == 0 and d["candidates"]["top1_agreement"] == 1
    assert all(not r["changed_layers"] for r in d["per_token"])


def test_diff_refuses_different_tokens_and_models():
    a = make_trace(n=6)
    b = make_trace(n=6)
    b.tokens = [dict(t) for t in b.tokens]
    b.tokens[4]["id"] = 49
    with pytest.raises(AnalysisError, match="differ at token 4"):
        diff_traces(a, b)
    with pytest.raises(AnalysisError, match="has 6 tokens and B 5"):
        diff_traces(a, make_trace(n=5))
    c = make_trace(n=6, E=9)
    with pytest.raises(AnalysisError, match="n_expert"):
        diff_traces(a, c)


def test_diff_cli_prints_json_and_text(tmp_path):
    from conftest import run_cli

    a, b = make_trace(n=12, seed=4), make_trace(n=12, seed=5, k=3)
    save(a, tmp_path / "a.json")
    save(b, tmp_path / "b.moetrace")
    r = run_cli("diff", tmp_path / "a.json", tmp_path / "b.moetrace", "--json", "--tokens", check=True)
    d = json.loads(r.stdout)
    ref = reference_diff(a, b)
    np.testing.assert_allclose(d["per_layer"]["mean_jaccard"], ref["mean_jaccard"], rtol=1e-9)
    assert len(d["per_token"]) == 12 and d["k"] == [2, 3]
    r = run_cli("diff", tmp_path / "a.json", tmp_path / "b.moetrace", "--tokens", check=True)
    assert "top-2 vs top-3" in r.stdout and "KL(A||B)" in r.stdout and "changed layers" in r.stdout
    save(make_trace(n=11), tmp_path / "c.json")
    r = run_cli("diff", tmp_path / "a.json", tmp_path / "c.json")
    assert r.returncode == 1 and r.stderr.startswith("moeviz diff: error: ") and r.stderr.count("\n") == 1
