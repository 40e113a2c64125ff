"""Time to first paint of a recorded run in headless Chromium: a 100,000-token trace of a
48-layer model, top-8 of 128 experts (bench/analysis_speed.py's synthetic routing,
512 prompt tokens), opened

  site       from an exported static site (runs/<name>.moetrace, served by a plain
             static file server on loopback)
  permalink  from `moeviz serve` (/r/<id>: the page, then /api/runs/<id>.moetrace)

Each load is a fresh browser context (no cache). "First paint" runs from the start of
the navigation to the start of the animation frame after the one that first drew the
run (the browser painted it in between); the page's own marks split it into the
document, the trace's transfer, parsing and checking it, loading it into the page's
state, and the first drawing. Prints each load, then the median and its ratio to the
1 s target.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from analysis_speed import synthetic_trace  # noqa: E402
from serverproc import ServerProcess, static_server  # noqa: E402

from moeviz.export import export_site  # noqa: E402
from moeviz.trace.store import RunStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TARGET_MS = 1000.0
LAYERS, EXPERTS, K = 48, 128, 8

# the page's User Timing marks (web/js/replay.js, main.js), in order
MARKS = ["moeviz:trace-fetched", "moeviz:trace-parsed", "moeviz:run-loaded", "moeviz:run-drawn"]


def measure(browser, url: str, n_tokens: int) -> dict:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url, wait_until="commit")
        page.wait_for_function("window.moeviz && moeviz.runTiming && moeviz.runTiming.painted !== null",
                               timeout=120_000)
        if errors:
            raise SystemExit(f"replay_load: the page failed: {errors[0]}")
        got = page.evaluate("""() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const marks = Object.fromEntries(performance.getEntriesByType("mark").map((m) => [m.name, m.startTime]));
            const res = performance.getEntriesByType("resource").filter((r) => r.name.endsWith(".moetrace"));
            return { tokens: moeviz.tokens, status: moeviz.status, painted: moeviz.runTiming.painted,
                     document: nav.responseEnd, traceStart: res.length ? res[0].startTime : null,
                     traceFirstByte: res.length ? res[0].responseStart : null, marks };
        }""")
    finally:
        context.close()
    if got["tokens"] != n_tokens:
        raise SystemExit(f"replay_load: the page shows {got['tokens']} tokens, not {n_tokens} ({got['status']})")
    m = got["marks"]
    missing = [k for k in MARKS if k not in m]
    if missing:
        raise SystemExit(f"replay_load: the page set no {missing[0]} mark")
    return {"first_paint": got["painted"], "document": got["document"],
            "request": (got["traceStart"] or got["document"]) - got["document"],
            "transfer": m["moeviz:trace-fetched"] - (got["traceStart"] or got["document"]),
            "parse": m["moeviz:trace-parsed"] - m["moeviz:trace-fetched"],
            "load": m["moeviz:run-loaded"] - m["moeviz:trace-parsed"],
            "draw": m["moeviz:run-drawn"] - m["moeviz:run-loaded"],
            "paint": got["painted"] - m["moeviz:run-drawn"]}


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
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
    cols = ["document", "request", "transfer", "parse", "load", "draw", "paint"]
    print(f"\n{'load':<14}{'first paint':>12}  " + "".join(f"{c:>10}" for c in cols) + "   (ms)")
    for name, rows in results.items():
        for i, r in enumerate(rows):
            print(f"{name + f' #{i + 1}':<14}{r['first_paint']:>12.0f}  " + "".join(f"{r[c]:>10.0f}" for c in cols))
    print("\ndocument: navigation start to the page's HTML received; request: to the trace's request; transfer: "
          "the trace's bytes; parse: header, checks (ids in range, finite weights); load: into the page's state "
          "(and the comparison's counts); draw: the first frame; paint: to the next frame")
    print()
    for name, rows in results.items():
        med = statistics.median(r["first_paint"] for r in rows)
        print(f"{name}: first paint {med:.0f} ms (median of {len(rows)}) = {med / TARGET_MS:.2f}x the "
              f"{TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
