"""server/trace_json.py streams a stored run's JSON in pieces (issue 21 finding 11): its
bytes must be exactly JSONResponse(to_json_dict(trace))'s, for every shape a trace has
(probabilities, candidates with their texts, one token, non-ASCII text)."""
from __future__ import annotations

import numpy as np
import pytest
from starlette.responses import JSONResponse

from moeviz.server import trace_json
from moeviz.server.trace_json import json_pieces
from moeviz.trace.io import to_json_dict
from moeviz.trace.schema import Trace


def make(n, L=2, k=2, E=8, probs=False, candidates=0):
    rng = np.random.default_rng(n)
    ids = ((rng.integers(0, E, (n, L, 1)) + np.arange(k)) % E).astype(np.int32)
    model = {"name": "t", "architecture": "qwen3moe", "n_layer": L, "moe_layers": list(range(L)), "dense_layers": [],
             "n_expert": E, "n_expert_used": k, "total_params": 10, "active_params": 5, "n_vocab": 100}
    tokens = [{"id": i % 100, "text": f"t{i}é\u2028", "prompt": i < 1} for i in range(n)]
    kw = {}
    if candidates:
        kw = {"candidate_ids": np.stack([rng.permutation(100)[:candidates] for _ in range(n)]).astype(np.int32),
              "candidate_probs": rng.random((n, candidates)).astype(np.float32),
              "candidate_texts": {i: f"c{i}" for i in range(100)}}
    settings = {"candidates": candidates} if candidates else {}
    return Trace(model, "p", settings, tokens, ids, rng.random((n, L, k)).astype(np.float32),
                 probs=rng.random((n, L, E)).astype(np.float32) if probs else None,
                 finish={"reason": "length", "n_prompt": 1, "n_generated": n - 1}, **kw).validate()


@pytest.mark.parametrize("trace", [make(1), make(3), make(700, probs=True), make(50, candidates=5),
                                   make(900, L=4, probs=True, candidates=3)])
def test_pieces_are_the_json_responses_bytes(trace, monkeypatch):
    monkeypatch.setattr(trace_json, "NUMBERS_PER_PIECE", 37)   # many pieces, rows split unevenly
    assert b"".join(json_pieces(trace)) == JSONResponse(to_json_dict(trace)).body
