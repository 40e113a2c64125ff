"""What the benches share: the import path (moeviz from this checkout, tests/ for
serverproc and browser), Debian's chromium launched as the browser tests launch it,
capture switched off, one generation's prefill and decode speed, rounds that interleave
the configurations, and the table of their medians.

A bench imports it before anything of moeviz's (`import _harness`: a script's own
folder, bench/, is on the path when it runs).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from browser import CHROMIUM, CHROMIUM_ARGS, launch  # noqa: E402,F401 - the browser tests' chromium

from moeviz.capture.factory import native_available  # noqa: E402
from moeviz.capture.routing import BatchRouting  # noqa: E402
from moeviz.engine import SamplingSettings  # noqa: E402
from moeviz.fixtures import FixtureSpec, write_fixture  # noqa: E402


class NoCapture:
    """Capture off: nothing requested from llama.cpp, empty routing handed back."""

    name = "off"
    needs_all_outputs = False

    def __init__(self, k):
        self.k = k

    def begin(self, probs=False):
        pass

    def finish(self, n):
        return BatchRouting(np.zeros((n, 0, self.k), np.int32), np.zeros((n, 0, self.k), np.float32))

    def abort(self):
        pass


def capture_off(engine):
    """Switch an engine's capture off (with the patched library, in llama.cpp too)."""
    if native_available():
        from moeviz.capture.native import _api

        _api()[0](engine.lm.ctx, False, False)
    engine.capture = NoCapture(engine.info.n_expert_used)
    return engine


def measure(engine, prompt_tokens, n_decode, probs=False):
    """(prefill tokens/s, decode tokens/s) of one greedy generation."""
    settings = SamplingSettings(max_tokens=n_decode, temperature=0.0)
    prefill = decode = 0.0
    n = 0
    for ev in engine.generate(prompt_tokens, settings, probs=probs):
        if type(ev).__name__ == "Finished":
            prefill, decode, n = ev.prefill_seconds, ev.decode_seconds, ev.n_generated
    return len(prompt_tokens) / prefill, n / decode


def model_or_fixture(model):
    """(model path, temporary folder to keep or None): `model`, or without one a generated
    fixture sized like a small real MoE model."""
    if model is not None:
        return model, None
    spec = FixtureSpec(arch="qwen2moe", n_layer=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=256,
                       n_expert=32, n_expert_used=4, seed=3)
    tmp = tempfile.TemporaryDirectory()
    path = str(write_fixture(Path(tmp.name) / "bench.gguf", spec))
    print("model: generated qwen2moe fixture, 8 layers, hidden 512, 32 experts top-4, expert ffn 256 (F32)")
    return path, tmp


def interleaved(engines: dict, prompt, n_decode, rounds, probs=()):
    """{key: ([prefill tokens/s], [decode tokens/s])} over `rounds` rounds of every engine;
    the order alternates round by round (drift cancels out) and a first round warms caches
    and page-ins, uncounted. Keys in `probs` generate with probabilities."""
    keys = list(engines)
    results = {k: ([], []) for k in keys}
    for r in range(rounds + 1):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            p, d = measure(engines[k], prompt, n_decode, probs=k in probs)
            if r > 0:
                results[k][0].append(p)
                results[k][1].append(d)
    return results


def medians(result):
    """(median prefill tokens/s, median decode tokens/s) of one interleaved() entry."""
    return statistics.median(result[0]), statistics.median(result[1])


def speed_table(results, base, labels):
    """Print decode and prefill tokens/s per key and their ratios to `base`'s; `labels`
    [(header, width)] name the parts of a key (a tuple, or one value)."""
    base_p, base_d = medians(results[base])
    head = "".join(f"{h:<{w}}" for h, w in labels)
    print(f"\n{head}{'decode tok/s':>14}{'ratio':>8}{'prefill tok/s':>16}{'ratio':>8}")
    for key, result in results.items():
        parts = key if isinstance(key, tuple) else (key,)
        p, d = medians(result)
        name = "".join(f"{part:<{w}}" for part, (_, w) in zip(parts, labels))
        print(f"{name}{d:>14.1f}{d / base_d:>8.3f}{p:>16.1f}{p / base_p:>8.3f}")
