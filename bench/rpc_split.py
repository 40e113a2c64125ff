"""What splitting a model over llama.cpp rpc-servers costs: decode and prefill tokens/s
of a local run vs. the same model split over two rpc-servers on loopback (started and
stopped here), each with capture off, native and the eval callback, in one run, as
ratios to local with capture off.

Rounds interleave the configurations (this machine is shared and noisy); the median per
configuration is reported. Loopback has no network latency, so the RPC numbers are the
protocol's own cost (serialization, one round trip per graph split), a lower bound for
real hosts. Run: `.venv/bin/python bench/rpc_split.py [--model M.gguf] [--tokens N] [--rounds R]`.
"""
from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np
from _harness import capture_off, interleaved, medians, model_or_fixture, speed_table

from moeviz.capture.factory import native_available
from moeviz.engine import Engine
from moeviz.llama import rpc
from moeviz.llama.rpc_server import rpc_server_command


def start_servers(n, threads):
    import socket

    procs, eps = [], []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs.append(subprocess.Popen(rpc_server_command(port=port, threads=threads),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        eps.append(f"127.0.0.1:{port}")
    for ep in eps:
        for _ in range(300):
            try:
                rpc.probe(ep, timeout=2)
                break
            except rpc.RpcError:
                time.sleep(0.1)
    return procs, eps


def make_engine(model, where, mode, threads, eps):
    capture = "callback" if mode == "callback" else "native" if native_available() else "auto"
    kw = dict(n_gpu_layers=-1, rpc=eps, tensor_split="1,1") if where == "rpc" else {}
    e = Engine(model, n_ctx=2048, n_threads=threads, capture=capture, **kw)
    return capture_off(e) if mode == "off" else e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="threads here and on each rpc-server")
    args = ap.parse_args()
    model, _tmp = model_or_fixture(args.model)
    procs, eps = start_servers(2, args.threads)
    try:
        modes = ["off", "native", "callback"] if native_available() else ["off", "callback"]
        configs = [(w, m) for w in ("local", "rpc") for m in modes]
        engines = {c: make_engine(model, *c, args.threads, eps) for c in configs}
        e0 = engines[("rpc", "off")]
        print(f"rpc-servers: {', '.join(eps)}; placement: {e0.placement_text()}")
        info = e0.info
        rng = np.random.default_rng(0)
        prompt = [int(t) for t in rng.integers(0, info.n_vocab - 8, args.prompt_tokens)]
        results = interleaved(engines, prompt, args.tokens, args.rounds)
        speed_table(results, ("local", "off"), [("where", 8), ("capture", 10)])
        for m in modes:
            lp, ld = medians(results[("local", m)])
            rp, rd = medians(results[("rpc", m)])
            print(f"rpc/local, capture {m}: decode {rd / ld:.3f}, prefill {rp / lp:.3f}")
        print(f"\n(median of {args.rounds} interleaved rounds; {args.tokens} decoded and {args.prompt_tokens} "
              "prompt tokens each; ratios to local with capture off)")
        for e in engines.values():
            e.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
