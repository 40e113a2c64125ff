"""Dormant experts of the demo model on the bundled prompts that suit it.

    python -m moeviz.demo_model.dormant_report [--model moeviz/data/demo-moe.gguf] [--max-tokens 64] [--json]

Records every bundled prompt meant for the demo model (prompts/*.json with "demo" in
`models`) through llama.cpp at temperature 0 (moeviz.record, native capture, f32 KV
cache, no flash attention: the same run on every machine), and counts, per layer, the
experts no token of the run selected. Two token sets: the prompt alone, and the prompt
with its greedy continuation (what the page shows after Generate).

Each count is set against uniform routing: if every token picked k of E experts
uniformly at random, an expert stays unused by n tokens with probability (1 - k/E)^n,
so that is the expected dormant share of (layer, expert) cells. Then, for every pair of
prompts, how much their dormant sets overlap (Jaccard index per layer, over layers
where either has a dormant expert), and how many experts are dormant in every prompt.
docs/demo-model.md quotes this script's output.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "demo-moe.gguf"


def dormant_sets(expert_ids: np.ndarray, n_expert: int) -> list[set[int]]:
    """expert_ids [n_tokens, n_layer, k] -> per layer, the experts no token selected."""
    return [set(range(n_expert)) - set(np.unique(expert_ids[:, li]).tolist()) for li in range(expert_ids.shape[1])]


def uniform_dormant_share(n_tokens: int, k: int, n_expert: int) -> float:
    return (1 - k / n_expert) ** n_tokens


def jaccard_per_layer(a: list[set[int]], b: list[set[int]]) -> float | None:
    """Mean Jaccard index of two runs' dormant sets over layers where either has one (None: neither has any)."""
    vals = [len(x & y) / len(x | y) for x, y in zip(a, b) if x | y]
    return float(np.mean(vals)) if vals else None


def record_prompts(model: Path, max_tokens: int = 64, names: list[str] | None = None) -> tuple[dict, list[dict]]:
    """(model info dict, [{name, n_prompt, n_tokens, expert_ids}]) for the demo prompts, greedy."""
    from ..engine import Engine, SamplingSettings  # noqa: PLC0415
    from ..prompts import load_prompts, suited  # noqa: PLC0415
    from ..record import record  # noqa: PLC0415

    library = load_prompts()
    prompts = [p for p in suited(library.values(), "demo") if names is None or p.name in names]
    engine = Engine(model, n_ctx=1024, capture="native", kv_type="f32", flash_attn="off")
    runs = []
    try:
        info = {"n_expert": engine.info.n_expert, "k": engine.info.n_expert_used}
        for p in prompts:
            trace = record(engine, p.prompt, SamplingSettings(max_tokens=max_tokens, temperature=0.0, seed=0))
            runs.append({"name": p.name, "n_prompt": trace.n_prompt, "n_tokens": trace.n_tokens,
                         "expert_ids": np.asarray(trace.expert_ids)})
    finally:
        engine.close()
    return info, runs


def report(model: Path = DEFAULT_MODEL, max_tokens: int = 64) -> dict:
    info, runs = record_prompts(model, max_tokens)
    E, k = info["n_expert"], info["k"]
    out = {"model": str(model), "n_expert": E, "k": k, "max_tokens": max_tokens, "temperature": 0.0, "prompts": []}
    sets = {}
    for r in runs:
        row = {"name": r["name"]}
        for part, n in (("prompt", r["n_prompt"]), ("all", r["n_tokens"])):
            d = dormant_sets(r["expert_ids"][:n], E)
            sets[r["name"], part] = d
            row[part] = {"tokens": int(n), "dormant_per_layer": [len(s) for s in d],
                         "dormant_share": sum(len(s) for s in d) / (len(d) * E),
                         "uniform_share": uniform_dormant_share(n, k, E)}
        out["prompts"].append(row)
    names = [r["name"] for r in runs]
    for part in ("prompt", "all"):
        pairs = []
        for a, b in itertools.combinations(names, 2):
            j = jaccard_per_layer(sets[a, part], sets[b, part])
            pairs.append({"a": a, "b": b, "jaccard": j,
                          "identical_layers": sum(x == y for x, y in zip(sets[a, part], sets[b, part]) if x | y)})
        in_all = [set.intersection(*(sets[n, part][li] for n in names)) for li in range(len(sets[names[0], part]))]
        js = [p["jaccard"] for p in pairs if p["jaccard"] is not None]
        out[f"overlap_{part}"] = {"pairs": pairs, "mean_jaccard": float(np.mean(js)) if js else None,
                                  "max_jaccard": float(np.max(js)) if js else None,
                                  "dormant_in_every_prompt": sum(len(s) for s in in_all),
                                  "dormant_in_every_prompt_per_layer": [len(s) for s in in_all]}
    return out


def format_report(r: dict) -> str:
    lines = [f"{r['model']}: {r['n_expert']} experts, top-{r['k']}; greedy, up to {r['max_tokens']} generated tokens",
             f"{'prompt':<22}{'tokens':>7}{'dormant':>9}{'uniform':>9}   {'tokens':>7}{'dormant':>9}{'uniform':>9}   "
             "dormant per layer (prompt+generated)",
             f"{'':<22}{'prompt only':^25}   {'prompt + generated':^25}"]
    for p in r["prompts"]:
        a, b = p["prompt"], p["all"]
        lines.append(f"{p['name']:<22}{a['tokens']:>7}{a['dormant_share']:>9.1%}{a['uniform_share']:>9.1%}   "
                     f"{b['tokens']:>7}{b['dormant_share']:>9.1%}{b['uniform_share']:>9.1%}   {b['dormant_per_layer']}")
    for part, label in (("prompt", "prompt only"), ("all", "prompt + generated")):
        o = r[f"overlap_{part}"]
        mj = "n/a" if o["mean_jaccard"] is None else f"{o['mean_jaccard']:.2f}"
        xj = "n/a" if o["max_jaccard"] is None else f"{o['max_jaccard']:.2f}"
        lines.append(f"overlap of dormant sets, {label}: mean Jaccard over prompt pairs {mj} (max {xj}); "
                     f"dormant in every prompt: {o['dormant_in_every_prompt']} "
                     f"(per layer {o['dormant_in_every_prompt_per_layer']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m moeviz.demo_model.dormant_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = report(args.model, args.max_tokens)
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
