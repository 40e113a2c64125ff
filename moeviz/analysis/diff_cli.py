"""`moeviz diff A B [--json] [--tokens]`: routing drift between two traces of the same tokens.

moeviz/cli.py registers the subcommand with add_diff_parser and calls cmd_diff; the
figures are moeviz.analysis.diff's (docs/analysis.md, "Diff").
"""
from __future__ import annotations

import json
import sys

import numpy as np

from .diff import diff_traces


def add_diff_parser(subparsers) -> None:
    p = subparsers.add_parser("diff", help="how two traces of the same tokens route them (a replay on another "
                                           "quantization, top-k or mask)")
    p.add_argument("a", metavar="A", help="trace file (.json or .moetrace): the reference")
    p.add_argument("b", metavar="B", help="trace file of the same tokens (e.g. moeviz record --tokens-from A)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--tokens", action="store_true", help="also one row per token: the layers whose expert set "
                                                         "changed, experts removed and added, KL")


def cmd_diff(args, out=None) -> int:
    from ..trace import load  # noqa: PLC0415

    out = out or sys.stdout
    a, b = load(args.a), load(args.b)
    d = diff_traces(a, b, names=(str(args.a), str(args.b)), tokens=args.tokens)
    if args.json:
        json.dump(_plain(d), out, separators=(",", ":"))
        out.write("\n")
    else:
        out.write(format_diff(d) + "\n")
    return 0


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _pct(x) -> str:
    return f"{100 * x:.1f}%"


def _mask_text(pairs) -> str:
    return ",".join(f"{a}:{b}" for a, b in pairs) or "none"


def format_diff(d: dict) -> str:
    na, nb = d["traces"]
    ka, kb = d["k"]
    lines = [f"{na} vs {nb}: {d['tokens']} tokens ({d['prompt_tokens']} prompt), {len(d['moe_layers'])} MoE layers, "
             f"top-{ka} vs top-{kb}" + (f", models {d['models'][0]} vs {d['models'][1]}"
                                         if d["models"][0] != d["models"][1] else "")]
    if any(d["mask"]):
        lines.append(f"masked: A {_mask_text(d['mask'][0])}; B {_mask_text(d['mask'][1])}")
    lines.append(f"{'layer':>5} {'same set':>9} {'Jaccard':>8} {'top-1':>7} {'weight L1':>10}")
    pl = d["per_layer"]
    for i, layer in enumerate(d["moe_layers"]):
        lines.append(f"{layer:>5} {_pct(pl['set_agreement'][i]):>9} {pl['mean_jaccard'][i]:>8.4f} "
                     f"{_pct(pl['top1_agreement'][i]):>7} {pl['weight_l1'][i]:>10.4f}")
    o = d["overall"]
    lines.append(f"{'all':>5} {_pct(o['set_agreement']):>9} {o['mean_jaccard']:>8.4f} {_pct(o['top1_agreement']):>7} "
                 f"{o['weight_l1']:>10.4f}")
    c = d["candidates"]
    if c is None:
        lines.append(f"Next-token distributions: {d['candidates_note']}")
    else:
        lines.append(f"Next-token distributions (top-{c['n'][0]} vs top-{c['n'][1]} candidates): KL(A||B) mean "
                     f"{c['kl_mean']:.6f} nats (max {c['kl_max']:.6f}), top-1 agreement {_pct(c['top1_agreement'])}")
    if "per_token" in d:
        lines += ["", f"{'token':>6} {'text':<14} {'Jaccard':>8} {'KL':>9}  changed layers: -removed +added"]
        for r in d["per_token"]:
            text = repr(r["text"])[1:-1][:14]
            kl = f"{r['kl']:.5f}" if "kl" in r else "–"
            changes = " ".join(f"L{c['layer']}:" + ",".join([f"-{e}" for e in c["removed"]] + [f"+{e}" for e in c["added"]])
                               for c in r["changes"]) or "same"
            lines.append(f"{r['index']:>6} {text:<14} {r['mean_jaccard']:>8.4f} {kl:>9}  {changes}")
    return "\n".join(lines)
