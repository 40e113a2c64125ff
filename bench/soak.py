"""Soak: thousands of runs from many clients against a real `moeviz serve` on loopback;
the server's memory must stay flat.

Rounds of `--clients` concurrent websocket clients each make `--runs-per-client` short
runs (some cancelled halfway, some clients leaving right after `start`), every run's
events checked in order; the server's RSS (/proc/<pid>/status) is read after each round.
Printed: runs, errors, the RSS at each tenth of the soak, and the RSS slope in MB per
1000 runs fitted after the warm-up (the first quarter of the runs). Target: flat within a
few MB per 1000 runs.

    .venv/bin/python bench/soak.py [--runs 3000 --clients 50 --max-tokens 4]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import _harness  # noqa: F401 - moeviz and tests/ on the path
from serverproc import ServerProcess
from websockets.sync.client import connect


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_client(url: str, runs: int, max_tokens: int, seed: int, problems: list) -> int:
    """`runs` runs on one connection: every third cancelled after its first token; the last
    run of every fourth client is abandoned right after `start` (the client just leaves)."""
    done = 0
    try:
        with connect(url, max_size=None, max_queue=None, open_timeout=30, close_timeout=10) as ws:
            if json.loads(ws.recv(timeout=30))["type"] != "model":
                problems.append("first message is not model")
            for r in range(runs):
                ws.send(json.dumps({"type": "generate", "text": f"soak run {seed} {r}", "max_tokens": max_tokens,
                                    "seed": seed * 1000 + r}))
                cancel = r % 3 == 2
                leave = seed % 4 == 3 and r == runs - 1
                kinds, index = [], None
                while True:
                    m = json.loads(ws.recv(timeout=120))
                    kinds.append(m["type"])
                    if m["type"] == "start" and leave:
                        return done
                    if m["type"] == "prompt":
                        index = len(m["tokens"])
                    if m["type"] == "token":
                        if m["index"] != index:
                            problems.append(f"token index {m['index']}, expected {index}")
                        index += 1
                        if cancel:
                            ws.send(json.dumps({"type": "cancel"}))
                            cancel = False
                    if m["type"] in ("done", "error"):
                        break
                if kinds[-1] != "done":
                    problems.append(f"run ended with {kinds[-1]}: {m.get('message')}")
                ordered = [k for k in kinds if k != "queued"]
                if ordered[:2] != ["start", "prompt"] or any(k != "token" for k in ordered[2:-1]):
                    problems.append(f"events out of order: {ordered[:6]}")
                if "permalink" not in m and "permalink_error" not in m:
                    problems.append("done without permalink")
                done += 1
    except Exception as e:  # noqa: BLE001 - counted, the soak goes on
        problems.append(f"client failed: {type(e).__name__}: {e}")
    return done


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3000, help="runs in all")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients per round")
    ap.add_argument("--runs-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--model", default=None, help="GGUF (default: the demo model)")
    args = ap.parse_args()
    per_round = args.clients * args.runs_per_client
    rounds = max(4, -(-args.runs // per_round))
    data = tempfile.TemporaryDirectory()
    extra = ["--model", args.model] if args.model else []
    problems: list[str] = []
    samples: list[tuple[int, float]] = []
    t0 = time.time()
    with ServerProcess("--data-dir", data.name, "--n-ctx", "512", *extra, timeout=120) as s:
        pid = s.proc.pid
        samples.append((0, rss_mb(pid)))
        total = 0
        for rnd in range(rounds):
            counts = [0] * args.clients

            def run(i, rnd=rnd):
                counts[i] = one_client(s.ws_url, args.runs_per_client, args.max_tokens, rnd * args.clients + i,
                                       problems)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total += sum(counts)
            samples.append((total, rss_mb(pid)))
        alive = s.proc.poll() is None
    elapsed = time.time() - t0
    warm = [(n, r) for n, r in samples if n >= samples[-1][0] / 4]
    n_mean = sum(n for n, _ in warm) / len(warm)
    r_mean = sum(r for _, r in warm) / len(warm)
    slope = sum((n - n_mean) * (r - r_mean) for n, r in warm) / max(1e-9, sum((n - n_mean) ** 2 for n, _ in warm))
    print(f"soak: {total} runs finished in {elapsed:.0f} s ({rounds} rounds of {args.clients} clients x "
          f"{args.runs_per_client} runs, max_tokens {args.max_tokens}); server alive: {alive}")
    print(f"problems: {len(problems)}" + (f" (first: {problems[0]})" if problems else ""))
    step = max(1, len(samples) // 10)
    print("RSS (MB) by runs: " + ", ".join(f"{n}: {r:.1f}" for n, r in samples[::step] + samples[-1:]))
    print(f"RSS slope after warm-up: {slope * 1000:+.2f} MB per 1000 runs "
          f"(start {samples[0][1]:.1f} MB, end {samples[-1][1]:.1f} MB)")
    return 0 if alive and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
