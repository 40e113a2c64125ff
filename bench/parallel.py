"""Parallel requests (serve --parallel N): aggregate tokens/s and per-request latency for
N = 1, 2, 4, 8 sequences decoded together, as ratios to N = 1, measured in one run.

Each measurement sends the same R requests at once (distinct prompts, greedy, T tokens
each) to an engine with N slots through engine/slots.py (a Scheduler), the path the server's worker
takes; a request's latency is from the moment all were sent to its last token. Rounds
interleave the N values (this machine is shared and noisy) and the median per N is
reported. Run: `make bench` or `.venv/bin/python bench/parallel.py [--model M.gguf]
[--requests R] [--tokens T] [--rounds K] [--threads N]`. Default: the demo model (6M
parameters: a step costs mostly fixed overhead, little weight reading) and a generated
qwen2moe fixture whose expert matrices dominate a step, as a real model's do.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _harness import model_or_fixture

from moeviz.demo import default_model_path
from moeviz.engine import Engine, Finished, SamplingSettings, TokenRouted
from moeviz.engine.slots import Run, Scheduler

PROMPTS = ["def fibonacci(n):", "import os\nimport sys\n\ndef main():", "The with statement", "class Queue:\n",
           "for i in range(10):", "# Copyright", "def read_config(path):\n", "async def fetch(url):",
           "The logging module", "class Point:\n    def __init__(self, x, y):"]


def prompts_for(engine, n: int) -> list[list[int]]:
    if engine.info.name == "moeviz-demo-moe":
        return [engine.prompt_tokens(PROMPTS[i % len(PROMPTS)]) for i in range(n)]
    rng = np.random.default_rng(0)   # a generated fixture: random tokens of various lengths
    return [[int(t) for t in rng.integers(0, engine.lm.n_vocab, 4 + 7 * i)] for i in range(n)]


def measure(engine, n_requests: int, settings: SamplingSettings) -> dict:
    batch = Scheduler(engine)
    waiting = prompts_for(engine, n_requests)
    pending = list(range(n_requests))
    latency, generated = {}, 0
    t0 = time.perf_counter()
    while pending or batch.active():
        while pending and batch.free():
            i = pending.pop(0)
            batch.add(i, Run(waiting[i], settings))
        for key, ev in batch.step():
            if isinstance(ev, BaseException):
                raise ev
            if isinstance(ev, TokenRouted):
                generated += 1
            elif isinstance(ev, Finished):
                latency[key] = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    return {"tokens_per_s": generated / wall, "latency": statistics.mean(latency.values()),
            "worst": max(latency.values()), "generated": generated}


def bench(model, args) -> None:
    settings = SamplingSettings(max_tokens=args.tokens, temperature=0.0)
    ns = [1, 2, 4, 8]
    engines = {n: Engine(model, n_ctx=args.n_ctx * n, n_threads=args.threads, parallel=n) for n in ns}
    info = engines[1].info
    print(f"\nmodel: {info.name} ({info.architecture}), {len(info.moe_layers)} MoE layers x {info.n_expert} experts, "
          f"top-{info.n_expert_used}, hidden {info.n_embd}; capture {engines[1].capture.name}")
    results = {n: [] for n in ns}
    measure(engines[1], 1, SamplingSettings(max_tokens=4, temperature=0.0))   # warm-up
    for _ in range(args.rounds):
        for n in ns:
            results[n].append(measure(engines[n], args.requests, settings))
    med = {n: {k: statistics.median(r[k] for r in results[n]) for k in ("tokens_per_s", "latency", "worst")}
           for n in ns}
    base = med[1]
    print(f"{'parallel':>8}  {'tokens/s':>9}  {'x N=1':>6}  {'mean latency':>12}  {'x N=1':>6}  {'worst':>7}")
    for n in ns:
        m = med[n]
        print(f"{n:>8}  {m['tokens_per_s']:9.1f}  {m['tokens_per_s'] / base['tokens_per_s']:6.2f}  "
              f"{m['latency']:11.2f}s  {m['latency'] / base['latency']:6.2f}  {m['worst']:6.2f}s")
    for e in engines.values():
        e.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="GGUF model (default: the demo model and a generated fixture)")
    ap.add_argument("--requests", type=int, default=8, help="requests sent at once per measurement")
    ap.add_argument("--tokens", type=int, default=48, help="tokens generated per request")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-ctx", type=int, default=1024, help="context per request")
    args = ap.parse_args()
    if args.model:
        bench(args.model, args)
    else:
        bench(default_model_path(), args)
        fixture, tmp = model_or_fixture(None)   # expert matrices dominate its steps
        bench(fixture, args)
        tmp.cleanup()
    print(f"\n({args.requests} requests sent at once, {args.tokens} tokens each, greedy; median of {args.rounds} "
          "interleaved rounds)")


if __name__ == "__main__":
    main()
