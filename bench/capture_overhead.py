"""What routing capture costs: decode and prefill speed with capture off, native,
native + full probabilities, and the eval callback, measured in one run on one model.

Rounds interleave the modes (this machine is shared and noisy) and the median per
mode is reported, as a ratio to capture-off. Run: `make bench` or
`.venv/bin/python bench/capture_overhead.py [--model M.gguf] [--tokens N] [--rounds R]`.
Without --model it writes a fixture sized like a small real MoE model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moeviz.capture.routing import BatchRouting  # noqa: E402
from moeviz.engine import Engine, SamplingSettings  # noqa: E402
from moeviz.capture.factory import native_available  # noqa: E402
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


def make_engine(model, mode, threads):
    capture = "callback" if mode == "callback" else ("native" if mode.startswith("native") else "auto")
    if mode == "off" and native_available():
        capture = "native"
    e = Engine(model, n_ctx=2048, n_threads=threads, capture=capture)
    if mode == "off":
        if native_available():
            from moeviz.capture.native import _api

            _api()[0](e.lm.ctx, False, False)   # patched library: switch the capture off
        e.capture = NoCapture(e.info.n_expert_used)
    return e


def measure(engine, prompt_tokens, n_decode, probs):
    settings = SamplingSettings(max_tokens=n_decode, temperature=0.0)
    prefill = decode = 0.0
    n = 0
    for ev in engine.generate(prompt_tokens, settings, probs=probs):
        name = type(ev).__name__
        if name == "Finished":
            prefill, decode, n = ev.prefill_seconds, ev.decode_seconds, ev.n_generated
    return len(prompt_tokens) / prefill, n / decode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=96, help="tokens decoded per measurement")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    tmp = None
    model = args.model
    if model is None:
        spec = FixtureSpec(arch="qwen2moe", n_layer=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=256,
                           n_expert=32, n_expert_used=4, seed=3)
        tmp = tempfile.TemporaryDirectory()
        model = str(write_fixture(Path(tmp.name) / "bench.gguf", spec))
        print(f"model: generated qwen2moe fixture, 8 layers, hidden 512, 32 experts top-4, expert ffn 256 (F32)")
    modes = ["off", "callback"] + (["native", "native+probs"] if native_available() else [])
    if not native_available():
        print("note: the patched library is not installed; native capture not measured")
    engines = {m: make_engine(model, m, args.threads) for m in modes}
    info = next(iter(engines.values())).info
    print(f"model: {info.name} ({info.architecture}), {len(info.moe_layers)} MoE layers x {info.n_expert} experts, "
          f"top-{info.n_expert_used}, vocabulary {info.n_vocab}")
    rng = np.random.default_rng(0)
    prompt = [int(t) for t in rng.integers(0, info.n_vocab - 8, args.prompt_tokens)]
    results = {m: ([], []) for m in modes}
    for r in range(args.rounds + 1):
        for m in (modes if r % 2 == 0 else modes[::-1]):   # alternate the order: drift cancels out
            p, d = measure(engines[m], prompt, args.tokens, probs=(m == "native+probs"))
            if r > 0:  # round 0 warms caches and page-ins
                results[m][0].append(p)
                results[m][1].append(d)
    base_p = statistics.median(results["off"][0])
    base_d = statistics.median(results["off"][1])
    print(f"\n{'capture':<14}{'decode tok/s':>14}{'ratio':>8}{'prefill tok/s':>16}{'ratio':>8}")
    for m in modes:
        p, d = statistics.median(results[m][0]), statistics.median(results[m][1])
        print(f"{m:<14}{d:>14.1f}{d / base_d:>8.3f}{p:>16.1f}{p / base_p:>8.3f}")
    print(f"\n(median of {args.rounds} interleaved rounds; {args.tokens} decoded and {args.prompt_tokens} prompt tokens each)")
    for e in engines.values():
        e.close()


if __name__ == "__main__":
    main()
