"""Recompute time of the page's analysis panels (web/js/analysis/) in headless Chromium.

A 2,000-token run of a 48-layer, top-8-of-128 model (bench/analysis_speed.py's
synthetic routing) is exported as a static site, served on loopback and opened;
with the cursor at the end, each panel's figures are recomputed (warm, the page's
per-run LRU and confidence caches filled) and the best of --rounds is printed with
its ratio to the 100 ms budget for one visible panel.

    .venv/bin/python bench/panel_time.py [--tokens 2000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, launch
from analysis_speed import synthetic_trace
from serverproc import static_server

from moeviz.trace import save

BUDGET_MS = 100.0
GROUPS = ["balance", "saturation", "profile", "map", "locality", "vocabulary", "confidence", "cache"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        trace = synthetic_trace(args.tokens, 48, 128, 8)
        save(trace.validate(), Path(tmp) / "big.json")
        subprocess.run([sys.executable, "-m", "moeviz", "export", "--out", str(Path(tmp) / "site"),
                        str(Path(tmp) / "big.json")], check=True, cwd=ROOT, capture_output=True)
        with static_server(Path(tmp) / "site") as url, sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url)
            page.wait_for_function(f"window.moeviz && moeviz.done && moeviz.tokens === {args.tokens}", timeout=120_000)
            page.click("#pb-end")
            page.wait_for_function(f"moeviz.applied === {args.tokens}")
            best = {g: math.inf for g in GROUPS}
            for _ in range(args.rounds):
                t = page.evaluate("(g) => moeviz.analysis({groups: g, timing: true}).timing_ms", GROUPS)
                best = {g: min(best[g], t[g]) for g in GROUPS}
            browser.close()
    print(f"analysis panels, {args.tokens} tokens x 48 MoE layers x top-8 of 128, best of {args.rounds}:")
    print(f"{'panel':<12}{'ms':>8}{'x budget':>10}")
    for g in GROUPS:
        print(f"{g:<12}{best[g]:>8.1f}{best[g] / BUDGET_MS:>10.2f}")
    print(f"worst: {max(best.values()):.1f} ms = {max(best.values()) / BUDGET_MS:.2f}x the {BUDGET_MS:.0f} ms budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
