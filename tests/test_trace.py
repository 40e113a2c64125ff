"""Trace format v1: both file forms round-trip unchanged; bad traces say what is wrong."""
import json
import os

import numpy as np
import pytest

from moeviz.trace import Trace, TraceFormatError, load, loads, save
from moeviz.trace.io import to_binary, to_json_dict


def small_trace(n=5, L=3, k=2, E=8, probs=True):
    rng = np.random.default_rng(0)
    ids = np.stack([np.stack([rng.choice(E, k, replace=False) for _ in range(L)]) for _ in range(n)]).astype(np.int32)
    w = rng.random((n, L, k), dtype=np.float32)
    p = rng.random((n, L, E), dtype=np.float32) if probs else None
    model = {"name": "t", "architecture": "llama", "n_layer": L + 1, "moe_layers": list(range(1, L + 1)),
             "n_expert": E, "n_expert_used": k, "total_params": 10, "active_params": 5}
    tokens = [{"id": i, "text": f"t{i} é", "prompt": i < 3} for i in range(n)]
    return Trace(model, [{"role": "user", "content": "hi"}], {"seed": 1}, tokens, ids, w, p,
                 {"reason": "length"}, {"created": "x"})


@pytest.mark.parametrize("name", ["t.json", "t.moetrace"])
@pytest.mark.parametrize("probs", [True, False])
def test_round_trip(tmp_path, name, probs):
    t = small_trace(probs=probs)
    save(t, tmp_path / name)
    back = load(tmp_path / name)
    assert back.equals(t)
    assert back.weights.dtype == np.float32 and back.expert_ids.dtype == np.int32
    assert os.listdir(tmp_path) == [name]          # no temporary file left behind


def test_recorded_trace_round_trips_through_both_forms(engines, tmp_path):
    from moeviz.engine import SamplingSettings
    from moeviz.trace.builder import TraceBuilder

    e = engines("deepseek2")
    b = TraceBuilder(e.info, "hello world", {"probs": True})
    for ev in e.generate("hello world", SamplingSettings(max_tokens=4), probs=True):
        b.add(ev)
    t = b.trace()
    for name in ("a.json", "a.moetrace"):
        save(t, tmp_path / name)
        assert load(tmp_path / name).equals(t)
    j = load(tmp_path / "a.json")
    save(j, tmp_path / "b.moetrace")
    assert (tmp_path / "b.moetrace").read_bytes() == (tmp_path / "a.moetrace").read_bytes()


def test_binary_is_compact():
    t = small_trace(n=400, L=24, k=8, E=64, probs=False)
    assert len(to_binary(t)) < 0.3 * len(json.dumps(to_json_dict(t)))


def corrupt(mutator):
    d = to_json_dict(small_trace())
    mutator(d)
    return json.dumps(d).encode()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "not a moeviz trace"),
    (lambda d: d.update(version=2), "unsupported trace version 2"),
    (lambda d: d["model"].pop("n_expert"), "model.n_expert is missing"),
    (lambda d: d["routing"]["expert_ids"][1][0].__setitem__(0, 8), r"routing.expert_ids\[1\]\[0\]\[0\] = 8 is outside \[0, 8\)"),
    (lambda d: d["routing"]["weights"][2][1].__setitem__(1, float("nan")), r"routing.weights\[2\]\[1\]\[1\] is not a finite number"),
    (lambda d: d["routing"]["weights"].pop(), r"routing.weights has shape \[4, 3, 2\], expected \[5, 3, 2\]"),
    (lambda d: d["routing"]["probs"][0].pop(), "rectangular"),
    (lambda d: d["tokens"][4].update(prompt=True), "prompt token after a generated one"),
    (lambda d: d["tokens"][0].pop("text"), r"tokens\[0\] must be"),
    (lambda d: d["model"].update(moe_layers=[1, 2, 9]), "model.moe_layers must list layer indices below"),
])
def test_validation_names_the_problem(mutate, message):
    with pytest.raises(TraceFormatError, match=message):
        loads(corrupt(mutate))


def test_truncated_and_garbage_files(tmp_path):
    good = to_binary(small_trace())
    with pytest.raises(TraceFormatError, match="truncated"):
        loads(good[:-9])
    with pytest.raises(TraceFormatError, match="truncated"):
        loads(good[:20])
    with pytest.raises(TraceFormatError, match="neither binary nor valid JSON"):
        loads(b"\x00\x01garbage")
    with pytest.raises(TraceFormatError, match="trace file not found"):
        load(tmp_path / "missing.json")


def test_a_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "t.json"
    save(small_trace(), path)
    before = path.read_bytes()
    bad = small_trace()
    bad.weights[0, 0, 0] = np.inf
    with pytest.raises(TraceFormatError):
        save(bad, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["t.json"]
