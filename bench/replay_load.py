"""Time to first paint of a recorded run in headless Chromium: a 100,000-token trace of a
48-layer model, top-8 of 128 experts (bench/analysis_speed.py's synthetic routing,
512 prompt tokens), opened

  site       from an exported static site (runs/<name>.moetrace and its head
             runs/<name>.head.moetrace, served by a plain static file server on loopback)
  permalink  from `moeviz serve` (/r/<id>: the page, /api/runs/<id>.moetrace?head=1024,
             then /api/runs/<id>.moetrace)

A long run is drawn from its head (the first 1,024 tokens, moeviz/trace/partial.py)
while the whole trace arrives. Each load is a fresh browser context (no cache; the
server's caches stay warm after its first load). "First paint" runs from the start of
the navigation to the start of the animation frame after the one that first drew the
run (the browser painted it in between); "whole" to the same for the first frame that
drew the whole run. The page's own marks split first paint into the document, its
modules (fetched at once: the HTML preloads them, and the head), building the views,
the rest of the wait for the head, parsing and checking it, loading it into the
page's state and the first drawing; then the whole trace's transfer, parsing and
drawing.
Prints each load, then the median and its ratio to the 1 s target.

    .venv/bin/python bench/replay_load.py [--tokens 100000] [--rounds 3] [--only site|permalink]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import CHROMIUM, launch
from analysis_speed import synthetic_trace
from serverproc import ServerProcess, static_server

from moeviz.export import export_site
from moeviz.trace.store import RunStore

TARGET_MS = 1000.0
LAYERS, EXPERTS, K = 48, 128, 8

# the page's User Timing marks (web/js/replay.js, main.js)
MARKS = ["moeviz:modules-ready", "moeviz:views-built", "moeviz:trace-fetched", "moeviz:trace-parsed",
         "moeviz:run-loaded", "moeviz:run-drawn", "moeviz:run-done-drawn"]


def measure(browser, url: str, n_tokens: int) -> dict:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url, wait_until="commit")
        page.wait_for_function("window.moeviz && moeviz.runTiming && moeviz.runTiming.donePainted !== null",
                               timeout=180_000)
        if errors:
            raise SystemExit(f"replay_load: the page failed: {errors[0]}")
        got = page.evaluate("""() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const marks = {};
            for (const m of performance.getEntriesByType("mark")) (marks[m.name] = marks[m.name] || []).push(m.startTime);
            return { tokens: moeviz.tokens, status: moeviz.status, timing: moeviz.runTiming,
                     document: nav.responseEnd, marks };
        }""")
    finally:
        context.close()
    if got["tokens"] != n_tokens:
        raise SystemExit(f"replay_load: the page shows {got['tokens']} tokens, not {n_tokens} ({got['status']})")
    m, t = got["marks"], got["timing"]
    missing = [k for k in MARKS if k not in m]
    if missing:
        raise SystemExit(f"replay_load: the page set no {missing[0]} mark")
    fetched, parsed = m["moeviz:trace-fetched"], m["moeviz:trace-parsed"]
    modules, views = m["moeviz:modules-ready"][0], m["moeviz:views-built"][0]
    row = {"first_paint": t["painted"], "whole": t["donePainted"], "document": got["document"],
           "modules": modules - got["document"], "views": views - modules, "trace": fetched[0] - views,
           "parse": parsed[0] - fetched[0], "load": m["moeviz:run-loaded"][0] - parsed[0],
           "draw": m["moeviz:run-drawn"][0] - m["moeviz:run-loaded"][0], "paint": t["painted"] - t["drawn"],
           "rest": None, "rest_parse": None, "rest_draw": None}
    if len(fetched) > 1:      # the head first, then the whole trace
        row.update(rest=fetched[-1] - t["painted"], rest_parse=parsed[-1] - fetched[-1],
                   rest_draw=t["donePainted"] - parsed[-1])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["site", "permalink"])
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"replay_load: needs Debian's chromium at {CHROMIUM}")
    t0 = time.perf_counter()
    trace = synthetic_trace(args.tokens, LAYERS, EXPERTS, K).validate()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_site(tmp / "site", [("synthetic", trace)])
        size = (tmp / "site/runs/synthetic.moetrace").stat().st_size
        run_id = RunStore(tmp / "runs", max_bytes=1 << 40).save(trace)
        del trace
        print(f"trace: {args.tokens} tokens x {LAYERS} MoE layers x top-{K} of {EXPERTS}, "
              f"{size / 2 ** 20:.0f} MiB as .moetrace (built in {time.perf_counter() - t0:.0f} s)")
        scenarios = [s for s in ("site", "permalink") if args.only in (None, s)]
        with sync_playwright() as p:
            browser = launch(p)
            try:
                for name in scenarios:
                    if name == "site":
                        with static_server(tmp / "site") as url:
                            results[name] = [measure(browser, url, args.tokens) for _ in range(args.rounds)]
                    else:
                        with ServerProcess("--data-dir", tmp / "runs") as server:
                            url = f"{server.url}/r/{run_id}"
                            results[name] = [measure(browser, url, args.tokens) for _ in range(args.rounds)]
            finally:
                browser.close()
    cols = ["document", "modules", "views", "trace", "parse", "load", "draw", "paint"]
    rest = ["rest", "rest_parse", "rest_draw"]

    def fmt(v, w=10):
        return f"{v:>{w}.0f}" if v is not None else f"{'-':>{w}}"
    print(f"\n{'load':<14}{'first paint':>12}" + "".join(f"{c:>10}" for c in cols) + f"{'whole':>10}"
          + "".join(f"{c:>11}" for c in rest) + "   (ms)")
    for name, rows in results.items():
        for i, r in enumerate(rows):
            print(f"{name + f' #{i + 1}':<14}{r['first_paint']:>12.0f}" + "".join(fmt(r[c]) for c in cols)
                  + fmt(r["whole"]) + "".join(fmt(r[c], 11) for c in rest))
    print("\ndocument: navigation start to the page's HTML received; modules: to every ES module fetched and run "
          "(the HTML preloads them, and the first trace: a long run's head); views: main.js building the views; "
          "trace: the rest of the wait for the first trace's bytes; parse: its header and checks (ids in range, "
          "finite weights); load: "
          "into the page's state; draw: the first frame; paint: to the next frame = first paint. The whole trace: "
          "rest: its transfer, after first paint; rest_parse: its checks; rest_draw: into the state and to the "
          "frame after the first that drew it whole = whole.")
    print()
    for name, rows in results.items():
        med = statistics.median(r["first_paint"] for r in rows)
        whole = statistics.median(r["whole"] for r in rows)
        print(f"{name}: first paint {med:.0f} ms (median of {len(rows)}) = {med / TARGET_MS:.2f}x the "
              f"{TARGET_MS:.0f} ms target; the whole run drawn at {whole:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
