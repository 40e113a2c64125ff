"""Golden figures: what moeviz.analysis, the trace checks and the heatmap colours give on
a few real traces, written as JSON for node's test runner to hold the page's JS to
(tests/js/*.test.js, `node --test tests/js`; make test runs it).

    python tests/write_golden.py            figures from the committed traces (seconds)
    python tests/write_golden.py --record   record the traces again first (needs llama.cpp)

tests/golden/ holds:
  traces/*.moetrace|json   real runs recorded with `moeviz record` (TRACES below): the demo
                           model and fixture models of other shapes (a dense layer and shared
                           experts, a what-if top-k with a mask and next-token candidates)
  <trace>.figures.json     per case (cursor, token selection, layer, expert): every figure
                           the analysis panels compute, as moeviz.analysis gives it (to_json),
                           and for the simulated baselines the value of each seeded draw, so
                           the page's own draws are held to the spread of Python's
  trace-checks.json        broken traces (either form) and what moeviz.trace.loads says
  heatmap.json             the heatmap palette and colour levels of moeviz/preview.py

tests/test_golden.py checks that the committed files are what this script writes now: a
change to an analysis figure fails there until the goldens are written again (and then in
node until the page's JS agrees).
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT))

from moeviz import analysis as A  # noqa: E402
from moeviz.analysis import locality, tokens as token_figures  # noqa: E402
from moeviz.trace import load  # noqa: E402

# name: (model (None: the demo model; else a fixture architecture), prompt, max tokens, extra record flags)
TRACES = {
    "demo-probs.moetrace": (None, "The cat sat on the mat. The dog sat on the log. The cat", 16, ["--probs"]),
    "deepseek2-plain.json": ("deepseek2", "the cat sat on the mat. the dog", 12, []),
    "llama-probs.moetrace": ("llama", "a b c a b c a b c " * 3 + "def f(x): return x", 20, ["--probs"]),
    "gpt-oss-whatif.moetrace": ("gpt-oss", "Once upon a time there was a", 10,
                                ["--probs", "--experts-per-token", "2", "--mask", "1:3,2:0", "--candidates", "3"]),
}
MIN_COUNT = 3


def record(workdir: Path) -> None:
    from moeviz.fixtures import write_fixture

    (GOLDEN / "traces").mkdir(parents=True, exist_ok=True)
    for name, (arch, prompt, max_tokens, flags) in TRACES.items():
        model = [] if arch is None else ["-m", str(write_fixture(workdir / f"{arch}.gguf", arch=arch))]
        cmd = [sys.executable, "-m", "moeviz", "record", *model, "--prompt", prompt, "-o", str(GOLDEN / "traces" / name),
               "--max-tokens", str(max_tokens), "--temperature", "0", "--n-ctx", "256", *flags]
        subprocess.run(cmd, check=True, cwd=ROOT)


# ---- figures ------------------------------------------------------------------------------

class Cut:
    """The first `applied` tokens of a trace (the page's playback cursor), as select_tokens reads a trace."""

    def __init__(self, trace, applied: int):
        self.model, self.n_tokens = trace.model, applied
        self.prompt_mask, self.tokens = trace.prompt_mask[:applied], trace.tokens[:applied]
        self.expert_ids, self.weights = trace.expert_ids[:applied], trace.weights[:applied]
        self.probs = None if trace.probs is None else trace.probs[:applied]


def expected_figures(r, layer: int, expert: int, min_count: int) -> dict:
    """Every figure the page's analysis panels compute (web/js/analysis/compute.js GROUPS),
    named as the page's figures() names them, from moeviz.analysis."""
    tal = A.tally(r)
    k, E = r.k, r.n_expert
    return A.to_json({
        "utilization": {"counts": tal.counts, "top1_counts": tal.top1_counts},
        "balance": A.load_balance(r),
        "dormant": {**A.dormant_experts(r), "uniform_expected_fraction": (1 - k / E) ** r.n_tokens},
        "saturation": A.saturation_curve(r, per_layer=True),
        "profile": A.expert_token_profile(r, layer, expert),
        "routing_map": {"top1": A.routing_map(r)["top1"]},
        "locality": A.consecutive_repetition(r),
        "coactivation": A.coactivation(r, layer),
        "transitions": A.layer_transitions(r, layer) if layer != r.moe_layers[-1] else None,
        "transition_summary": A.transition_summary(r),
        "specialization": A.vocabulary_specialization(r, min_count=min_count),
        "confidence": A.router_confidence(r) if r.probs is not None else None,
        "cache": A.cache_hit_rates(r),
    })


def draws(r, min_count: int, figures: dict) -> dict:
    """The simulated baselines draw by draw ({figure path: [per value: [draws]]}), rebuilt
    as moeviz.analysis seeds them; each draw list's mean is checked against the figure."""
    n, E = r.n_tokens, r.n_expert
    top1 = A.tally(r).top1_by_layer
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n) for _ in range(max(1, min(16, locality.SHUFFLE_DRAWS // n)))]
    mi, pred = [], []
    for i in range(len(top1) - 1):
        pairs = [locality._figures(top1[i], top1[i + 1][o], E, n) for o in orders]
        mi.append([m for m, _ in pairs])
        pred.append([p for _, p in pairs])
    out = {"transition_summary.mutual_information_shuffled": mi, "transition_summary.predictability_shuffled": pred}
    uniq, inverse, occ = np.unique(r.token_ids, return_inverse=True, return_counts=True)
    frequent = occ >= min_count
    if frequent.any():
        compact = np.full(len(uniq), -1, np.intp)
        compact[frequent] = np.arange(int(frequent.sum()))
        row_token = compact[inverse]
        rows = np.flatnonzero(row_token >= 0)
        tok = row_token[rows] * E
        rng = np.random.default_rng(0)
        shuffles = [tok[rng.permutation(len(tok))] for _ in range(max(1, min(16, token_figures.SIMULATED_DRAWS // len(tok))))]
        total, F = occ[frequent].sum(), int(frequent.sum())
        out["specialization.shuffled_baseline"] = [
            [token_figures._largest_counts(s + top1[i][rows], F, E).sum() / total for s in shuffles]
            for i in range(len(top1))]
        rng = np.random.default_rng(0)
        occ_f = occ[frequent]
        token = np.repeat(np.arange(F) * E, occ_f)
        reps = max(1, min(32, token_figures.SIMULATED_DRAWS // int(total)))
        out["specialization.uniform_baseline"] = [[
            token_figures._largest_counts(token + rng.integers(0, E, int(total)), F, E).sum() / total
            for _ in range(reps)]]
    for path, per_value in out.items():
        group, key = path.split(".")
        want = figures[group][key]
        for i, d in enumerate(per_value):
            got = float(np.mean(d))
            w = want[i] if isinstance(want, list) else want
            assert math.isclose(got, w, rel_tol=1e-12, abs_tol=1e-15), (path, i, got, w)
    return A.to_json(out)


def cases(trace) -> list[dict]:
    """Cursors (the whole run and a few tokens into the generated ones), token selections,
    and per-layer choices (first and last MoE layer, the busiest expert there)."""
    n, n_prompt = trace.n_tokens, trace.n_prompt
    layers = trace.model["moe_layers"]
    picks = [(n, "all", layers[0]), (n_prompt + 3, "generated", layers[-1])]
    if trace.model["n_expert"] <= 32:    # [E, E] figures of 64 experts: two cases are enough bytes
        picks += [(n, "prompt", layers[-1]), (n, "generated", layers[len(layers) // 2]), (n_prompt + 3, "all", layers[0])]
    out = []
    for applied, tokens, layer in picks:
        r = A.select_tokens(Cut(trace, applied), tokens, name="trace")
        expert = int(A.tally(r).counts[r.layer_index(layer)].argmax())
        figures = expected_figures(r, layer, expert, MIN_COUNT)
        out.append({"applied": applied, "tokens": tokens, "layer": layer, "expert": expert, "minCount": MIN_COUNT,
                    "n": r.n_tokens, "figures": figures, "draws": draws(r, MIN_COUNT, figures)})
    return out


# ---- trace checks -------------------------------------------------------------------------

def broken_traces(base: dict) -> list[tuple[str, object]]:
    """(what is wrong, the broken trace as a JSON object or raw bytes) from a valid JSON trace."""
    import copy

    def change(path, value):
        d = copy.deepcopy(base)
        *head, last = path
        obj = d
        for p in head:
            obj = obj[p]
        if value is DELETE:
            del obj[last]
        else:
            obj[last] = value
        return d

    m, E = base["model"], base["model"]["n_expert"]
    layer = m["moe_layers"][0]
    used = base["routing"]["expert_ids"][0][0][0]
    out = [
        ("format", change(["format"], "other")), ("version", change(["version"], 2)),
        ("no model", change(["model"], DELETE)), ("no n_expert", change(["model", "n_expert"], DELETE)),
        ("n_expert_used 0", change(["model", "n_expert_used"], 0)),
        ("n_expert_used > n_expert", change(["model", "n_expert_used"], E + 1)),
        ("n_layer negative", change(["model", "n_layer"], -1)),
        ("moe_layers descending", change(["model", "moe_layers"], m["moe_layers"][::-1])),
        ("moe_layers past n_layer", change(["model", "moe_layers"], [*m["moe_layers"][:-1], m["n_layer"]])),
        ("settings a list", change(["settings"], [])),
        ("experts_per_token 0", change(["settings", "experts_per_token"], 0)),
        ("mask not a pair", change(["settings", "mask"], [[layer]])),
        ("mask on a layer that is not MoE", change(["settings", "mask"], [[m["n_layer"] + 1, 0]])),
        ("mask expert out of range", change(["settings", "mask"], [[layer, E]])),
        ("mask on a used expert", change(["settings", "mask"], [[layer, used]])),
        ("candidates negative", change(["settings", "candidates"], -1)),
        ("tokens not a list", change(["tokens"], {})), ("token without text", change(["tokens", 0, "text"], DELETE)),
        ("prompt token after a generated one", change(["tokens", len(base["tokens"]) - 1, "prompt"], True)),
        ("no routing", change(["routing"], DELETE)),
        ("expert_ids one token short", change(["routing", "expert_ids"], base["routing"]["expert_ids"][:-1])),
        ("expert id out of range", change(["routing", "expert_ids", 1, 0, 0], E)),
        ("expert id not an integer", change(["routing", "expert_ids", 1, 0, 0], 1.5)),
        ("weight a string", change(["routing", "weights", 0, 0, 0], "0.5")),
        ("probs the wrong width", change(["routing", "probs"], [[[0.5] * (E - 1)] * len(m["moe_layers"])]
                                                               * len(base["tokens"]))),
        # what the page's checks lacked before the goldens (tracecheck.js now has them too)
        ("n_expert past llama.cpp's limit", change(["model", "n_expert"], 4096)),
        ("temperature a string", change(["settings", "temperature"], "hot")),
        ("finish.reason unknown", change(["finish", "reason"], "bored")),
        ("token id past n_vocab", change(["tokens", 0, "id"], m["n_vocab"])),
    ]
    raw = json.dumps(base).encode()
    out += [("not JSON", b"{" + raw), ("empty file", b"")]
    return out


DELETE = object()


def trace_checks(base_path: Path, binary_path: Path) -> list[dict]:
    from moeviz.trace.io import loads
    from moeviz.trace.schema import TraceFormatError

    def verdict(buf: bytes):
        try:
            loads(buf)
            return None
        except TraceFormatError as e:
            return str(e)

    base = _head(json.loads(base_path.read_bytes()), n_prompt=3, n_generated=2)     # small: each case holds a copy
    raw = json.dumps(base).encode()
    out = [{"case": "valid JSON", "bytes": _b64(raw), "error": verdict(raw)}]
    for what, t in broken_traces(base):
        buf = t if isinstance(t, bytes) else json.dumps(t).encode()
        out.append({"case": what, "bytes": _b64(buf), "error": verdict(buf)})
    good = binary_path.read_bytes()
    hlen = int.from_bytes(good[8:12], "little")
    for what, buf in [("valid .moetrace", good), ("truncated in the arrays", good[:-9]),
                      ("truncated in the header", good[:12 + hlen // 2]), ("bad magic", b"MOETRACX" + good[8:])]:
        out.append({"case": what, "bytes": _b64(buf), "error": verdict(buf)})
    assert out[0]["error"] is None and all(c["error"] for c in out[1:-4]) and out[-4]["error"] is None
    return out


def _head(d: dict, n_prompt: int, n_generated: int) -> dict:
    """A JSON trace cut to its first prompt and generated tokens."""
    p = sum(t["prompt"] for t in d["tokens"])
    keep = list(range(n_prompt)) + list(range(p, p + n_generated))
    d = {**d, "tokens": [d["tokens"][i] for i in keep], "routing": {k: [v[i] for i in keep] for k, v in d["routing"].items()}}
    d["finish"] = {**d["finish"], "n_prompt": n_prompt, "n_generated": n_generated}
    return d


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


# ---- heatmap colours ----------------------------------------------------------------------

def heatmap() -> dict:
    from moeviz import preview

    counts = [0, 1, 2, 3, 5, 7, 100, 255, 256, 1000, 4095, 4096]
    scales = [1, 2, 8, 256, 4096]
    return {"palette": preview._palette().tolist(),
            "levels": [{"scale": s, "counts": [c for c in counts if c <= s],
                        "levels": preview.heat_levels(np.array([c for c in counts if c <= s]), s).tolist()}
                       for s in scales]}


def write_all() -> dict[str, bytes]:
    """Every golden file's bytes by path relative to tests/golden/ (nothing written)."""
    files = {}
    for name in TRACES:
        trace = load(GOLDEN / "traces" / name)
        files[f"{name}.figures.json"] = _dump({"trace": f"traces/{name}", "cases": cases(trace)})
    files["trace-checks.json"] = _dump(trace_checks(GOLDEN / "traces" / "deepseek2-plain.json",
                                                    GOLDEN / "traces" / "llama-probs.moetrace"))
    files["heatmap.json"] = _dump(heatmap())
    return files


def _dump(obj) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", action="store_true", help="record the traces again (llama.cpp, a few seconds each)")
    args = ap.parse_args()
    if args.record:
        with tempfile.TemporaryDirectory() as tmp:
            record(Path(tmp))
    for rel, data in write_all().items():
        (GOLDEN / rel).write_bytes(data)
        print(f"tests/golden/{rel}: {len(data) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
