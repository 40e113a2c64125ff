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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture_overhead import NoCapture, measure  # noqa: E402

from moeviz.capture.factory import native_available  # noqa: E402
from moeviz.engine import Engine  # noqa: E402
from moeviz.fixtures import FixtureSpec, write_fixture  # noqa: E402
from moeviz.llama import rpc  # noqa: E402
from moeviz.llama.rpc_server import rpc_server_command  # noqa: E402


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
    if mode == "off":
        if native_available():
            from moeviz.capture.native import _api

            _api()[0](e.lm.ctx, False, False)
        e.capture = NoCapture(e.info.n_expert_used)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="threads here and on each rpc-server")
    args = ap.parse_args()
    tmp = None
    model = args.model
    if model is None:
        spec = FixtureSpec(arch="qwen2moe", n_layer=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=256,
                           n_expert=32, n_expert_used=4, seed=3)
        tmp = tempfile.TemporaryDirectory()
        model = str(write_fixture(Path(tmp.name) / "bench.gguf", spec))
        print("model: generated qwen2moe fixture, 8 layers, hidden 512, 32 experts top-4, expert ffn 256 (F32)")
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
        results = {c: ([], []) for c in configs}
        for r in range(args.rounds + 1):
            for c in (configs if r % 2 == 0 else configs[::-1]):
                p, d = measure(engines[c], prompt, args.tokens, probs=False)
                if r > 0:
                    results[c][0].append(p)
                    results[c][1].append(d)
        base_p = statistics.median(results[("local", "off")][0])
        base_d = statistics.median(results[("local", "off")][1])
        print(f"\n{'where':<8}{'capture':<10}{'decode tok/s':>14}{'ratio':>8}{'prefill tok/s':>16}{'ratio':>8}")
        for c in configs:
            p, d = statistics.median(results[c][0]), statistics.median(results[c][1])
            print(f"{c[0]:<8}{c[1]:<10}{d:>14.1f}{d / base_d:>8.3f}{p:>16.1f}{p / base_p:>8.3f}")
        for m in modes:
            lp, ld = (statistics.median(x) for x in results[("local", m)])
            rp, rd = (statistics.median(x) for x in results[("rpc", m)])
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
