"""A stored run as JSON, streamed in pieces (issue 21 finding 11: 8 concurrent GETs of an
80 MB JSON trace stalled /health 7.1 s).

`trace.io.to_json_dict(trace)` + one `json.dumps` are two C calls of seconds each for a large run
(`.tolist()` of the routing arrays, then the encoder): a C call never lets go of the GIL,
so every other thread waits, the event loop's included, even with the work in a worker
thread. Here the small parts are encoded at once and each routing array a block of rows
at a time; Starlette pulls the pieces of a sync iterator in its threadpool, and between
two pieces the GIL passes to whoever waits. The bytes are those of
`JSONResponse(to_json_dict(trace))`: the same compact encoding, the same floats.
"""
from __future__ import annotations

import json
import re
import secrets

import numpy as np

from ..trace.schema import Trace

NUMBERS_PER_PIECE = 16384   # one piece of an array: ~200 KB of JSON, a few ms of encoding


def _encode(obj) -> str:
    # Starlette's JSONResponse.render, without its final .encode()
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _array_pieces(arr: np.ndarray):
    rows = max(1, NUMBERS_PER_PIECE // max(1, arr[0].size if len(arr) else 1))
    yield "["
    for start in range(0, len(arr), rows):
        body = _encode(arr[start:start + rows].tolist())[1:-1]
        yield ("," if start else "") + body
    yield "]"


def json_pieces(trace: Trace):
    """The trace's JSON form, as bytes pieces."""
    arrays: dict[str, np.ndarray] = {}
    mark = f"@@moeviz-array-{secrets.token_hex(8)}-"

    def placeholder(arr) -> str:
        key = f"{mark}{len(arrays)}@@"
        arrays[key] = arr
        return key

    # to_json_dict's layout (test_permalinks checks the bytes are its JSONResponse's)
    d = trace.header()
    d["routing"] = {"expert_ids": placeholder(trace.expert_ids), "weights": placeholder(trace.weights)}
    if trace.probs is not None:
        d["routing"]["probs"] = placeholder(trace.probs)
    if trace.candidate_ids is not None:
        d["candidates"] = {**d.get("candidates", {}), "ids": placeholder(trace.candidate_ids),
                           "probs": placeholder(trace.candidate_probs)}
    # the placeholders in the order they appear in the text (a header's own "candidates"
    # key may come before "routing")
    parts = re.split(f'"({re.escape(mark)}\\d+@@)"', _encode(d))
    for i, part in enumerate(parts):
        if i % 2:
            for piece in _array_pieces(arrays[part]):
                yield piece.encode("utf-8")
        else:
            yield part.encode("utf-8")
