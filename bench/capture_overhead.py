"""What routing capture costs: decode and prefill speed with capture off, native,
native + full probabilities, and the eval callback, measured in one run on one model.

Rounds interleave the modes (this machine is shared and noisy) and the median per
mode is reported, as a ratio to capture-off. Run: `make bench` or
`.venv/bin/python bench/capture_overhead.py [--model M.gguf] [--tokens N] [--rounds R]`.
Without --model it writes a fixture sized like a small real MoE model.
"""
from __future__ import annotations

import argparse

import numpy as np
from _harness import capture_off, interleaved, model_or_fixture, speed_table

from moeviz.capture.factory import native_available
from moeviz.engine import Engine


def make_engine(model, mode, threads):
    capture = "callback" if mode == "callback" else ("native" if mode.startswith("native") else "auto")
    if mode == "off" and native_available():
        capture = "native"
    e = Engine(model, n_ctx=2048, n_threads=threads, capture=capture)
    return capture_off(e) if mode == "off" else e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=96, help="tokens decoded per measurement")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    model, _tmp = model_or_fixture(args.model)
    modes = ["off", "callback"] + (["native", "native+probs"] if native_available() else [])
    if not native_available():
        print("note: the patched library is not installed; native capture not measured")
    engines = {m: make_engine(model, m, args.threads) for m in modes}
    info = next(iter(engines.values())).info
    print(f"model: {info.name} ({info.architecture}), {len(info.moe_layers)} MoE layers x {info.n_expert} experts, "
          f"top-{info.n_expert_used}, vocabulary {info.n_vocab}")
    rng = np.random.default_rng(0)
    prompt = [int(t) for t in rng.integers(0, info.n_vocab - 8, args.prompt_tokens)]
    results = interleaved(engines, prompt, args.tokens, args.rounds, probs={"native+probs"})
    speed_table(results, "off", [("capture", 14)])
    print(f"\n(median of {args.rounds} interleaved rounds; {args.tokens} decoded and {args.prompt_tokens} prompt tokens each)")
    for e in engines.values():
        e.close()


if __name__ == "__main__":
    main()
