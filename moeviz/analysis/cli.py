"""`moeviz stats TRACE... [--json] [--tokens prompt|generated|all] [--jobs N] [--no-cache-sim]`: routing statistics.

moeviz/cli.py registers the subcommand with add_stats_parser and calls cmd_stats;
errors are raised (AnalysisError, TraceFormatError) for the CLI to print as one line.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from .routing import TOKEN_SELECTIONS, AnalysisError, select_tokens
from .summary import comparison_stats, routing_stats, to_json


def add_stats_parser(subparsers) -> None:
    p = subparsers.add_parser("stats", help="routing statistics of one or more traces (compared when several)")
    p.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (.json or .moetrace)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {\"traces\": [stats per trace], \"comparison\": null or the comparison}")
    p.add_argument("--tokens", choices=TOKEN_SELECTIONS, default="all",
                   help="which tokens to analyse: prompt, generated or all (default)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes for the passes over every expert assignment on long traces (default: one per "
                        "CPU; the numbers do not depend on it)")
    p.add_argument("--no-cache-sim", action="store_true",
                   help="skip the LRU expert-cache simulation (the slowest figure: ~20 s on a million-token, "
                        "48-layer trace against ~4 s for everything else)")


def cmd_stats(args, out=None) -> int:
    from ..trace import load  # noqa: PLC0415

    out = out or sys.stdout
    routings = [select_tokens(load(path), args.tokens, name=str(path)) for path in args.traces]
    if args.jobs < 1:
        raise AnalysisError(f"--jobs must be at least 1, not {args.jobs}")
    stats = [routing_stats(r, cache=not args.no_cache_sim, jobs=args.jobs) for r in routings]
    comparison = comparison_stats(routings) if len(routings) > 1 else None     # reuses the tallies
    if args.json:
        json.dump(to_json({"traces": stats, "comparison": comparison}), out, separators=(",", ":"))
        out.write("\n")
    else:
        out.write("\n\n".join(format_stats(s) for s in stats))
        if comparison is not None:
            out.write("\n\n" + format_comparison(comparison))
        out.write("\n")
    return 0


def _f(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def format_stats(s: dict) -> str:
    m, tok = s["model"], s["tokens"]
    layers = m["moe_layers"]
    E, k = m["n_expert"], m.get("experts_per_token", m["n_expert_used"])
    shared = f", {m['n_shared_experts']} shared (always run, not routed)" if m.get("n_shared_experts") else ""
    model_k = f" (the model's: top-{m['n_expert_used']})" if k != m["n_expert_used"] else ""
    lines = [f"{s['trace']}: {m['name']} ({m['architecture']}), {len(layers)} MoE layers x {E} experts, "
             f"top-{k}{model_k}{shared}",
             f"tokens: {tok['selection']}, {tok['count']} ({tok['prompt']} prompt + {tok['count'] - tok['prompt']} "
             "generated)", ""]
    b, d = s["balance"], s["dormant"]
    ideal = b["ideal"]
    n_top = b["top_share_experts"]
    lines.append(f"Load balance per MoE layer (even routing: cv 0, entropy 1, maxvio 0, jain 1, gini 0, top10% "
                 f"{_f(ideal['top_share'])} = share of the top {n_top} expert{'s' if n_top > 1 else ''}; "
                 "cv of uniform random routing in brackets)")
    lines.append(f"{'layer':>5} {'cv':>11} {'entropy':>7} {'maxvio':>6} {'jain':>5} {'gini':>5} {'top10%':>6} "
                 f"{'dormant':>8}")
    for i, layer in enumerate(layers):
        lines.append(f"{layer:>5} {_f(b['cv'][i]):>4} ({_f(b['cv_random'][i])}) {_f(b['normalized_entropy'][i]):>7} "
                     f"{_f(b['max_violation'][i]):>6} {_f(b['jain_index'][i]):>5} {_f(b['gini'][i]):>5} "
                     f"{_f(b['top_share'][i]):>6} {d['count'][i]:>4}/{E}")
    lines.append(f"Dormant: {d['total']} of {len(layers) * E} experts ({_pct(d['total_fraction'])}); uniform random "
                 f"routing would leave {_pct(d['uniform_expected_fraction'])} after {tok['count']} tokens")
    sat = s["saturation"]
    pick = sorted({int(i) for i in np.linspace(0, len(sat["tokens"]) - 1, min(6, len(sat["tokens"])))})
    lines.append("Saturation, dormant after t tokens (observed / uniform random): " + ", ".join(
        f"t={sat['tokens'][i]} {_pct(sat['dormant_fraction'][i])} / {_pct(sat['uniform_expected'][i])}"
        for i in pick))
    lines += ["", *_locality_lines(s, layers), "", *_specialization_lines(s, layers)]
    if s["confidence"] is not None:
        lines += ["", *_confidence_lines(s["confidence"], layers)]
    else:
        lines += ["", f"Router confidence: {s['confidence_note']}"]
    if s["expert_cache"] is not None:
        lines += ["", *_cache_lines(s["expert_cache"], k, E)]
    return "\n".join(lines)


def _locality_lines(s: dict, layers: list[int]) -> list[str]:
    loc = s["locality"]
    if loc["pairs"] == 0:
        return [f"Locality: {loc['note']}"]
    out = [f"Consecutive tokens per MoE layer: same top-1 expert, share of top-k kept "
           f"(uniform random: {_f(loc['top1_repeat_uniform'], 3)}, {_f(loc['topk_overlap_uniform'], 3)}; "
           "shuffled token order in brackets)",
           f"{'layer':>5} {'top-1 repeat':>16} {'top-k overlap':>16}"]
    for i, layer in enumerate(layers):
        out.append(f"{layer:>5} {_f(loc['top1_repeat'][i], 3):>7} ({_f(loc['top1_repeat_shuffled'][i], 3)}) "
                   f"{_f(loc['topk_overlap'][i], 3):>7} ({_f(loc['topk_overlap_shuffled'][i], 3)})")
    tr = s["transitions"]
    if tr["pairs"]:
        out.append("Top-1 transitions between adjacent MoE layers: mutual information in bits and predictability "
                   "(shuffled tokens in brackets; guessing the commonest next expert after the slash)")
        for (a, b), mi, mi0, p, p0, g in zip(tr["pairs"], tr["mutual_information_bits"],
                                             tr["mutual_information_shuffled"], tr["predictability"],
                                             tr["predictability_shuffled"], tr["predictability_baseline"]):
            out.append(f"{a:>5}->{b:<5} MI {_f(mi, 3)} ({_f(mi0, 3)})  predictability {_f(p)} ({_f(p0)}) / {_f(g)}")
    return out


def _specialization_lines(s: dict, layers: list[int]) -> list[str]:
    sp = s["specialization"]
    if not sp["tokens"]:
        return [f"Vocabulary specialization: {sp['note']}"]
    out = [f"Vocabulary specialization: {sp['tokens']} token ids seen >= {sp['min_count']} times "
           f"({sp['occurrences']} occurrences); share sent to each one's commonest top-1 expert per layer "
           f"(tokens shuffled in brackets; uniform random routing: {_f(sp['uniform_baseline'])})",
           "  " + "  ".join(f"{layer}: {_f(x)} ({_f(b)})" for layer, x, b in
                            zip(layers, sp["share"], sp["shuffled_baseline"]))]
    if sp["most_specialized"]:
        out.append("  most specialized: " + ", ".join(f"{t['text']!r} x{t['occurrences']} {_f(t['mean_share'])}"
                                                      for t in sp["most_specialized"][:5]))
    return out


def _confidence_lines(c: dict, layers: list[int]) -> list[str]:
    if c["scores_are_probabilities"]:
        kind = f"{c['gating']} probabilities"
    else:
        kind = f"{c['gating']} scores, not probabilities" if c["gating"] else "router scores, gating unknown"
    out = [f"Router confidence ({kind}), mean [median] per MoE layer",
           f"{'layer':>5} {'top-1':>13} {'margin k/k+1':>13} {'entropy':>13}"]
    for i, layer in enumerate(layers):
        margin = c["margin"]
        out.append(f"{layer:>5} {_f(c['top1']['mean'][i], 3):>5} [{_f(c['top1']['p50'][i], 3)}] "
                   f"{(_f(margin['mean'][i], 3) + ' [' + _f(margin['p50'][i], 3) + ']') if margin else 'n/a':>13} "
                   f"{_f(c['entropy']['mean'][i], 3):>5} [{_f(c['entropy']['p50'][i], 3)}]")
    return out


def _cache_lines(c: dict, k: int, E: int) -> list[str]:
    caps = [int(x) for x in c["capacities"]]
    shown = [x for x in sorted({k, 2 * k, 4 * k, 8 * k, E // 2, E}) if x in caps]
    col = [caps.index(x) for x in shown]
    return [f"Expert cache, hit rate with C experts cached per layer (all layers; compulsory misses "
            f"{_pct(c['compulsory_miss'])})",
            "  C       " + "".join(f"{x:>8}" for x in shown),
            "  LRU     " + "".join(f"{_pct(c['lru_overall'][i]):>8}" for i in col),
            "  hottest " + "".join(f"{_pct(c['static_overall'][i]):>8}" for i in col)]


def format_comparison(c: dict) -> str:
    lines = [f"Comparison of {len(c['traces'])} traces (per MoE layer: Jaccard index of the used-expert sets)"]
    for p in c["pairs"]:
        per = " ".join(_f(x) for x in p["jaccard"])
        lines.append(f"  {p['traces'][0]} vs {p['traces'][1]}: mean {_f(p['mean_jaccard'])}  [{per}]")
    lines.append(f"Dormant in every trace: {c['dormant_in_all_total']} experts "
                 f"({_pct(c['dormant_in_all_fraction'])}); per trace: "
                 + ", ".join(f"{name} {n}" for name, n in zip(c["traces"], c["dormant_per_trace"])))
    return "\n".join(lines)
