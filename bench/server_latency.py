"""Per-token latency the server adds: from the engine yielding a decoded token (routing
included) to that token's websocket message having been sent. Target: <= 1 ms.

Runs the real app under uvicorn in this process (so the timestamps are readable) with a
websocket client on loopback. `.venv/bin/python bench/server_latency.py [--layers 48 --experts 128]`
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from moeviz.engine import Engine  # noqa: E402
from moeviz.fixtures import FixtureSpec, write_fixture  # noqa: E402
from moeviz.server import create_app  # noqa: E402


def main():
    if "--switch" in sys.argv:
        sys.setswitchinterval(float(sys.argv.pop(sys.argv.index("--switch") + 1)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--switch-interval", type=float, default=None, help="override sys.setswitchinterval (seconds)")
    args = ap.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    tmp = tempfile.TemporaryDirectory()
    spec = FixtureSpec(arch="llama", n_layer=args.layers, n_embd=64, n_ff=16, n_expert=args.experts,
                       n_expert_used=args.top_k, seed=1)
    model = write_fixture(Path(tmp.name) / "lat.gguf", spec)
    engine = Engine(model, n_ctx=2048)
    app = create_app(engine)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    per_token_decode = []
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        ws.recv()
        for run in range(args.runs):
            ws.send(json.dumps({"type": "generate", "text": "Once upon a time", "max_tokens": args.tokens,
                                "seed": run, "probs": False}))
            while True:
                m = json.loads(ws.recv(timeout=120))
                if m["type"] == "token":
                    per_token_decode.append(m["seconds"])
                if m["type"] in ("done", "error"):
                    break
    server.should_exit = True
    rows = list(app.state.token_latency)
    lat = sorted((sent - ev) * 1e3 for ev, _, _, sent in rows)
    med, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    parts = {"encode (worker thread)": [(q - ev) * 1e3 for ev, q, _, _ in rows],
             "wait for the event loop": [(d - q) * 1e3 for _, q, d, _ in rows],
             "websocket send": [(s - d) * 1e3 for _, _, d, s in rows]}
    dec = statistics.median(per_token_decode) * 1e3
    print(f"model: {args.layers} MoE layers x {args.experts} experts, top-{args.top_k}, capture {engine.capture.name}")
    print(f"tokens measured: {len(lat)}; median decode {dec:.2f} ms/token (engine, not counted)")
    print(f"added latency decode -> websocket sent: median {med:.3f} ms, p95 {p95:.3f} ms")
    for name, v in parts.items():
        print(f"  {name:<26} median {statistics.median(v):.3f} ms")
    print(f"ratio to the 1 ms target: median {med / 1.0:.2f}, p95 {p95 / 1.0:.2f}")
    engine.close()


if __name__ == "__main__":
    main()
