"""`moeviz cache-plan --train T... --test T... --budget N|MiB [--model M.gguf] [--json]`.

moeviz/cli.py registers the subcommand with add_cache_plan_parser and calls
cmd_cache_plan; the figures are cache_plan.py's. A budget in MiB (`512MiB`, `2GiB`)
becomes experts per layer through the model file's expert sizes (`moeviz info`).
"""
from __future__ import annotations

import json
import re
import sys

from .cache_plan import POLICIES, PREFETCH_WINDOWS, cache_plan
from .routing import AnalysisError, select_tokens
from .summary import to_json

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MiB|GiB|M|G)?\s*$", re.IGNORECASE)
NAMES = {"lru": "LRU", "lfu": "LFU", "lrfu": "LRFU (adaptive)", "static": "static (training counts)",
         "belady": "Belady (offline bound)"}


def add_cache_plan_parser(subparsers) -> None:
    p = subparsers.add_parser("cache-plan", help="expert cache policies scored on held-out traces, and the "
                                                 "llama.cpp placement to use")
    p.add_argument("--train", nargs="+", required=True, metavar="TRACE",
                   help="traces the policies learn from and warm up on (static counts, LRFU's lambda)")
    p.add_argument("--test", nargs="+", required=True, metavar="TRACE", help="held-out traces the policies are scored on")
    p.add_argument("--budget", required=True, metavar="N|MiB",
                   help="cache size per MoE layer: N experts, or memory for all MoE layers together "
                        "(512MiB, 2GiB: needs --model for the expert sizes)")
    p.add_argument("--model", "-m", default=None, help="the traces' GGUF model (for a budget in MiB)")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"budget": N, "policies": {"lru": {"hit_rate": h, "per_layer": [...]}, ...}, ...}')


def parse_budget(text: str, expert_bytes_per_layer: float | None, n_layers: int) -> tuple[int, float | None]:
    """(experts per layer, MiB or None) from `16`, `512MiB`, `2GiB`."""
    m = _BUDGET.match(text)
    if not m:
        raise AnalysisError(f"--budget {text[:30]!r} is neither a number of experts nor a size like 512MiB")
    value, unit = float(m.group(1)), (m.group(2) or "").lower()
    if not unit:
        if value != int(value):
            raise AnalysisError(f"--budget {text!r}: a number of experts is a whole number")
        return int(value), None
    mib = value * (1024 if unit.startswith("g") else 1)
    if expert_bytes_per_layer is None:
        raise AnalysisError("a --budget in MiB needs --model (the expert sizes come from the model file)")
    return int(mib * 2**20 // (expert_bytes_per_layer * n_layers)), mib


def cmd_cache_plan(args, out=None) -> int:
    from ..gguf_info import read_model_info  # noqa: PLC0415
    from ..trace import load  # noqa: PLC0415

    out = out or sys.stdout
    train = [select_tokens(load(p), "all", name=str(p)) for p in args.train]
    test = [select_tokens(load(p), "all", name=str(p)) for p in args.test]
    ref = test[0]
    info, per_expert = None, None
    if args.model:
        info = read_model_info(args.model)
        if info.n_expert != ref.n_expert or list(info.moe_layers) != ref.moe_layers:
            raise AnalysisError(f"{args.model} has {info.n_expert} experts in MoE layers {info.moe_layers}, the traces "
                                f"{ref.n_expert} in {ref.moe_layers}: not their model")
        per_expert = info.expert_bytes / (len(info.moe_layers) * info.n_expert)
    budget, mib = parse_budget(args.budget, per_expert, ref.n_layers)
    plan = cache_plan(train, test, budget)
    plan["budget_mib"] = mib
    if per_expert is not None:
        plan["expert_mib"] = per_expert / 2**20
    plan["llama_cpp"] = llama_cpp_placement(plan, ref.model, info)
    if args.json:
        json.dump(to_json(plan), out, separators=(",", ":"))
        out.write("\n")
    else:
        out.write(format_plan(plan) + "\n")
    return 0


def llama_cpp_placement(plan: dict, model: dict, info=None) -> dict:
    """What to give llama.cpp for the same memory. Its expert weights are one tensor per
    layer and matrix (all E experts), and -ot / --n-cpu-moe place whole tensors: a
    budget of N experts in each of L layers buys floor(N * L / E) whole layers of experts
    on the GPU, which serve that share of the selections (every layer serves n * k). The
    vendored llama.cpp has no expert cache of its own."""
    layers, E, N = plan["moe_layers"], plan["n_expert"], plan["budget"]
    gpu = min(len(layers), N * len(layers) // E)
    cpu_layers = layers[:len(layers) - gpu]
    if not cpu_layers:
        n_cpu_moe, flag = 0, "(no flag: every layer's experts fit on the GPU)"
    elif gpu == 0:
        n_cpu_moe, flag = len(layers), "--cpu-moe"
    else:
        n_cpu_moe = layers[len(layers) - gpu]          # first block index whose experts stay on the GPU
        flag = f"--n-cpu-moe {n_cpu_moe}"
    alternation = "|".join(str(i) for i in cpu_layers)
    ot = f'-ot "blk\\.({alternation})\\.ffn_(up|down|gate|gate_up)_exps=CPU"' if cpu_layers else ""
    return {"gpu_layers": gpu, "cpu_layers": cpu_layers, "n_cpu_moe": n_cpu_moe, "flag": flag, "override_tensor": ot,
            "hit_rate": gpu / len(layers), "expert_cache": None,
            "note": "llama.cpp places whole expert tensors (all experts of a layer), so a per-expert static plan "
                    "becomes whole layers of the same memory; this llama.cpp has no expert cache of its own"}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_plan(p: dict) -> str:
    size = f" ({p['budget_mib']:.0f} MiB in all)" if p.get("budget_mib") else ""
    lines = [f"Expert cache plan: {p['budget']} of {p['n_expert']} experts cached per MoE layer{size}, top-{p['k']}; "
             f"trained on {p['tokens']['train']} tokens, scored on {p['tokens']['test']} held-out tokens",
             f"  {'policy':<28}{'hit rate':>9}   per MoE layer"]
    for name in POLICIES:
        pol = p["policies"][name]
        extra = f" (lambda {pol['lambda']:g})" if name == "lrfu" else ""
        per = " ".join(f"{100 * x:.0f}" for x in pol["per_layer"])
        lines.append(f"  {NAMES[name] + extra:<28}{_pct(pol['hit_rate']):>9}   [{per}]")
    best = p["recommendation"]
    bound = p["policies"]["belady"]["hit_rate"]
    lines.append(f"Recommendation: {NAMES[best]}, {_pct(p['policies'][best]['hit_rate'])} of the selections served "
                 f"from the cache (the offline bound: {_pct(bound)})")
    ll = p["llama_cpp"]
    lines.append(f"llama.cpp (whole layers of experts, the same memory): {ll['flag']}"
                 + (f"  or  {ll['override_tensor']}" if ll["override_tensor"] and ll["gpu_layers"] else "")
                 + f": {ll['gpu_layers']} of {len(p['moe_layers'])} MoE layers' experts on the GPU, serving "
                   f"{_pct(ll['hit_rate'])} of the selections; this llama.cpp has no expert cache of its own")
    f = p["prefetch"]
    lines.append("Prefetch: share of a token's experts used by the previous token " + _pct(f["previous_token"])
                 + "; within the last " + ", ".join(f"{w}: {_pct(f['within_last'][w])}" for w in PREFETCH_WINDOWS)
                 + " tokens; predicted from the previous MoE layer's experts "
                 + (_pct(f["previous_layer"]) if f["previous_layer"] is not None else "n/a (one MoE layer)"))
    return "\n".join(lines)
