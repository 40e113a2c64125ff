"""`moeviz prune [--model M.gguf] --out P.gguf (--keep N | --drop L:E,...) [--traces T...] [--by count|weight]
[--held-out T...]`: moeviz/cli.py registers it with add_prune_parser and calls cmd_prune;
the work is prune.py's."""
from __future__ import annotations

import sys


def add_prune_parser(subparsers) -> None:
    p = subparsers.add_parser("prune", help="write a GGUF that keeps N routed experts per MoE layer, chosen from traces")
    p.add_argument("--model", "-m", default=None, help="GGUF model file to prune (default: the built-in demo model)")
    p.add_argument("--out", "-o", required=True, help="pruned GGUF to write")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--keep", type=int, metavar="N", help="keep N experts in every MoE layer, chosen from --traces")
    how.add_argument("--drop", metavar="L:E[,L:E...]",
                     help="drop these experts (model layer : expert id, the same number from every MoE layer)")
    p.add_argument("--traces", nargs="+", default=[], metavar="TRACE", help="traces of this model to choose from")
    p.add_argument("--by", choices=("count", "weight"), default="count",
                   help="keep the experts selected most often (count) or with the largest summed gate weight")
    p.add_argument("--held-out", nargs="+", default=[], metavar="TRACE",
                   help="traces not used for choosing: print the share of their selections the pruned model keeps")


def _routings(paths, info, what: str):
    from .analysis import select_tokens  # noqa: PLC0415
    from .prune import PruneError  # noqa: PLC0415
    from .trace import load  # noqa: PLC0415

    out = []
    for path in paths:
        r = select_tokens(load(path), "all", name=str(path))
        if r.n_expert != info.n_expert or r.moe_layers != list(info.moe_layers):
            raise PruneError(f"{what} {path} routes {r.n_expert} experts in MoE layers {r.moe_layers}; the model has "
                             f"{info.n_expert} in {list(info.moe_layers)}: record it with this model")
        out.append(r)
    return out


def cmd_prune(args, out=None) -> int:
    from .engine.masks import parse_mask  # noqa: PLC0415
    from .gguf_info import read_model_info  # noqa: PLC0415
    from .prune import PruneError, check_plan, choose_experts, drop_experts, kept_share, prune_gguf  # noqa: PLC0415

    from .demo import default_model_path  # noqa: PLC0415

    out = out or sys.stdout
    args.model = args.model or str(default_model_path())
    info = read_model_info(args.model)
    if not info.is_moe:
        raise PruneError(f"{args.model} has no routed experts to prune")
    if args.keep is not None:
        if not args.traces:
            raise PruneError("--keep chooses the experts from traces: give --traces (or name them with --drop)")
        plan = choose_experts(info, _routings(args.traces, info, "trace"), args.keep, args.by)
    else:
        if args.traces:
            raise PruneError("--drop names the experts itself: --traces is for --keep")
        plan = drop_experts(info, parse_mask(args.drop, list(info.moe_layers), info.n_expert))
    check_plan(info, plan)
    held_out = _routings(args.held_out, info, "held-out trace")      # checked before anything is written
    result = prune_gguf(args.model, args.out, plan)
    before, after = result["size_before"], result["size_after"]
    out.write(f"moeviz: kept {result['n_expert']} of {result['n_expert_before']} experts in each of "
              f"{len(plan.moe_layers)} MoE layers: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
              f"({100 * after / before:.0f}%) -> {args.out}\n")
    if held_out:
        out.write(f"held-out traces: {100 * kept_share(plan, held_out):.1f}% of their expert selections are kept\n")
    out.write("next: moeviz record --model PRUNED --tokens-from HELD_OUT --candidates 10, then moeviz diff\n")
    return 0
