"""Routing as Parquet (`moeviz export --parquet OUT`): one long table for DuckDB, Polars, Spark.

One row per (run, token, MoE layer, slot):

    run          string (dictionary)  the run's name (its trace file's stem)
    token_index  int32                position in the run, prompt first
    token_id     int32
    token        string (dictionary)  the token's text
    prompt       bool                 true for prompt tokens, false for generated ones
    layer        int16                model layer index (as `moeviz stats` names layers)
    slot         int8                 position in the top-k, in llama.cpp's order
    expert       int16
    weight       float32              the expert's gate weight

Written in row groups of about ROWS_PER_GROUP rows straight from the routing arrays
(numpy repeats, no Python loop per row), to a temporary file renamed into place.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..files import replaced_whole

ROWS_PER_GROUP = 1 << 22
COLUMNS = ("run", "token_index", "token_id", "token", "prompt", "layer", "slot", "expert", "weight")


def _schema(pa):
    return pa.schema([("run", pa.dictionary(pa.int32(), pa.string())), ("token_index", pa.int32()),
                      ("token_id", pa.int32()), ("token", pa.dictionary(pa.int32(), pa.string())),
                      ("prompt", pa.bool_()), ("layer", pa.int16()), ("slot", pa.int8()), ("expert", pa.int16()),
                      ("weight", pa.float32())])


def _batches(pa, name: str, trace, run_index: int, names):
    n, L, k = trace.expert_ids.shape
    per_token = L * k
    step = max(1, ROWS_PER_GROUP // max(1, per_token))
    token_ids = np.fromiter((t["id"] for t in trace.tokens), np.int32, count=n)
    prompt = trace.prompt_mask
    texts = pa.array([t["text"] for t in trace.tokens], pa.string())
    layers = np.tile(np.repeat(np.asarray(trace.model["moe_layers"], np.int16), k), step)
    slots = np.tile(np.arange(k, dtype=np.int8), L * step)
    for s in range(0, n, step):
        m = min(step, n - s)
        rows = m * per_token
        tok = np.repeat(np.arange(s, s + m, dtype=np.int32), per_token)
        yield pa.record_batch([
            pa.DictionaryArray.from_arrays(np.full(rows, run_index, np.int32), names),
            pa.array(tok), pa.array(token_ids[tok]),
            pa.DictionaryArray.from_arrays(tok, texts),
            pa.array(prompt[tok]), pa.array(layers[:rows]), pa.array(slots[:rows]),
            pa.array(trace.expert_ids[s:s + m].reshape(-1).astype(np.int16)),
            pa.array(trace.weights[s:s + m].reshape(-1).astype(np.float32)),
        ], schema=_schema(pa))


def write_parquet(runs: list[tuple[str, object]], path: str | os.PathLike) -> int:
    """Write `runs` ([(name, Trace)]) as one table at `path`; returns the number of rows."""
    import pyarrow as pa  # noqa: PLC0415  (only this command needs it)
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = pa.array([name for name, _ in runs], pa.string())
    rows = 0
    with replaced_whole(path) as tmp:
        with pq.ParquetWriter(tmp, _schema(pa), compression="zstd") as writer:
            for i, (name, trace) in enumerate(runs):
                for batch in _batches(pa, name, trace, i, names):
                    writer.write_batch(batch)
                    rows += batch.num_rows
    return rows
