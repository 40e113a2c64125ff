"""Frame time of the page's per-token update (state + heatmap + current-token panel)
in headless Chromium, at up to 94 layers x 384 experts, top-8; and of every frame of
the panel's animation in each playback mode (single: a token sweeping the layers;
sequence: a token a frame with a fading trail; all: the prefill batch lit together).

Serves the repository over loopback HTTP, opens bench/frame_harness.html (which
imports the page's own modules from web/js and feeds them synthetic routing, one
token per animation frame), and prints median / p95 per update and the ratio to the
4 ms budget. "update" includes a 1-pixel canvas readback that forces Chromium to
rasterize the queued drawing, so it is the cost of getting the pixels drawn, not
just of issuing canvas calls.

    .venv/bin/python bench/frame_time.py [--tokens 300] [--json]
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import threading
from pathlib import Path
from urllib.parse import urlencode

from _harness import CHROMIUM, ROOT, launch

TARGET_MS = 4.0

CASES = [  # (label, query, devicePixelRatio)
    ("94x384 top-8", {"layers": 94, "experts": 384, "k": 8}, 1),
    ("94x384 top-8, dpr 2", {"layers": 94, "experts": 384, "k": 8}, 2),
    ("94x384 top-8, router probs", {"layers": 94, "experts": 384, "k": 8, "probs": 1, "tokens": 120}, 1),
    ("61x256 top-8, 3 dense", {"layers": 58, "experts": 256, "k": 8, "dense": 3}, 1),
    ("4x8 top-2", {"layers": 4, "experts": 8, "k": 2}, 1),
    ("94x384 top-8, anim single", {"layers": 94, "experts": 384, "k": 8, "anim": "single"}, 1),
    ("94x384 top-8, anim single, dpr 2", {"layers": 94, "experts": 384, "k": 8, "anim": "single"}, 2),
    ("94x384 top-8, anim sequence", {"layers": 94, "experts": 384, "k": 8, "anim": "sequence"}, 1),
    ("94x384 top-8, anim all", {"layers": 94, "experts": 384, "k": 8, "anim": "all", "tokens": 60}, 1),
    ("94x384 top-8, anim single, probs", {"layers": 94, "experts": 384, "k": 8, "anim": "single", "probs": 1,
                                          "tokens": 6}, 1),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run(tokens: int | None = None, width: int = 1400) -> list[dict]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"frame_time: needs Debian's chromium at {CHROMIUM}")
    httpd = serve(ROOT)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/bench/frame_harness.html"
    results = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            for label, query, dpr in CASES:
                q = dict(query)
                if tokens and "tokens" not in q:
                    q["tokens"] = tokens
                page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=dpr)
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{base}?{urlencode(q)}")
                page.wait_for_function("window.benchResult !== undefined || document.title === 'failed'",
                                       timeout=300_000)
                if errors:
                    raise SystemExit(f"frame_time: harness failed: {errors[0]}")
                results.append({"case": label, **page.evaluate("window.benchResult")})
                page.close()
            browser.close()
    finally:
        httpd.shutdown()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=None, help="generated tokens per case (default 300)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = ap.parse_args(argv)
    results = run(args.tokens)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"per-token update in Chromium (state + heatmap + panel, rasterized); target {TARGET_MS:.0f} ms;"
          " 'anim' cases: per animation frame")
    print(f"{'case':30} {'canvas px':>11} {'median':>8} {'p95':>8} {'x target':>9}  "
          f"{'heatmap':>8} {'panel':>7} {'state':>7} {'+others':>8} {'prefill':>8} {'full':>7}")
    for r in results:
        u = r["update"]
        print(f"{r['case']:30} {r['canvas'][0]:>5}x{r['canvas'][1]:<5} {u['median']:>6.2f}ms {u['p95']:>6.2f}ms "
              f"{u['median'] / TARGET_MS:>8.2f}x  {r['heatmap']['median']:>6.2f}ms {r['panel']['median']:>5.2f}ms "
              f"{r['state']['median']:>5.2f}ms {r['others']['median']:>6.2f}ms {r['prefillBatchMs']:>6.1f}ms "
              f"{r['fullHeatmapRepaintMs']:>5.1f}ms")
    print("heatmap/panel/state: medians of the parts; +others: dormant list, header and token stream (not in"
          " 'update'); prefill: a 64-token batch as one step; full: a full heatmap repaint (resize, mode switch)")
    print("anim cases: 'update' is one frame of playback in that mode (every frame of the sweeps, glows and"
          " fades), " + ", ".join(f"{r['case'].split(', anim ')[1]}: {r['frames']} frames" for r in results
                                  if r.get("anim")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
