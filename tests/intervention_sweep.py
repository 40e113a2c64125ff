"""Every top-k a run may ask for (1..n_expert), alone and with the most masking allowed,
on one or more models, with both capture backends: `python tests/intervention_sweep.py
MODEL...` prints one JSON line per model and capture.

Run in a subprocess by tests/test_aborts.py: a value llama.cpp cannot run used to abort
the process (ggml-backend.cpp: GGML_ASSERT(sched->hash_set.size >= n_nodes + n_leafs),
the scheduler reserved for the model's own top-k), and an abort must fail the test with
its text, not take pytest with it.

Per value: the routing has k experts per token, k distinct ones; with every expert but k
masked in every MoE layer, the k picked are exactly the unmasked ones. A value the engine
refuses must be refused in one line (a UserError): the only refusal expected is a model
whose layers pick experts by token id (no top-k to override).
"""
from __future__ import annotations

import json
import sys

import numpy as np


def sweep(path: str, capture: str) -> dict:
    from moeviz.engine import Engine
    from moeviz.errors import UserError

    engine = Engine(path, n_ctx=128, n_batch=32, n_ubatch=16, capture=capture, kv_type="f32", flash_attn="off")
    out = {"model": path, "capture": capture, "ran": [], "refused": {}, "bad": []}
    try:
        info = engine.info
        n_vocab = engine.lm.n_vocab
        tokens = [(5 + 7 * i) % n_vocab for i in range(6)]
        for k in range(1, info.n_expert + 1):
            keep = list(range(k))   # experts 0..k-1 stay; the rest masked where a mask is used
            masks = [[], [(layer, e) for layer in info.moe_layers for e in range(k, info.n_expert)]]
            for mask in masks:
                try:
                    engine.set_interventions(experts_per_token=k, mask=mask)
                    r = engine.replay(tokens, 3)
                except UserError as e:
                    line = str(e)
                    if "\n" in line or not line:
                        out["bad"].append([k, bool(mask), f"refusal not one line: {line!r}"])
                    out["refused"][f"{k}{'m' if mask else ''}"] = line
                    continue
                ids = np.asarray(r.expert_ids)
                if ids.shape[-1] != k:
                    out["bad"].append([k, bool(mask), f"{ids.shape[-1]} experts per token"])
                    continue
                srt = np.sort(ids, axis=-1)
                if k > 1 and not (srt[..., 1:] != srt[..., :-1]).all():
                    out["bad"].append([k, bool(mask), "an expert picked twice"])
                if mask and not (srt == np.array(keep)).all():
                    out["bad"].append([k, True, "picked a masked expert"])
                out["ran"].append(f"{k}{'m' if mask else ''}")
        engine.set_interventions(experts_per_token=None, mask=[])
        r = engine.replay(tokens, 3)
        if np.asarray(r.expert_ids).shape[-1] != info.n_expert_used:
            out["bad"].append([None, False, "the model's own top-k not restored"])
    finally:
        engine.close()
    return out


def main(argv: list[str]) -> int:
    for path in argv:
        for capture in ("native", "callback"):
            print(json.dumps(sweep(path, capture)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
