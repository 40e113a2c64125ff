"""Capture overhead and page frame time on a model shaped like Qwen3-30B-A3B: 48 MoE
layers x 128 experts, top-8, a 151,936-token vocabulary (tiny hidden size, Q8_0;
moeviz.fixtures.models.QWEN3_30B_SHAPE), generated into a temporary folder.

1. Decode and prefill tokens/s with capture off, native, native + probabilities and the
   eval callback, interleaved rounds in one run, as ratios to capture off (the prompt is
   longer than a ubatch, so the callback prefills in chunks: logits for every row).
2. The page's per-frame time in headless Chromium against a real `moeviz serve` on the
   model, during live generation: each animation-frame callback that applied new tokens,
   timed with a 1-pixel heatmap readback that forces the drawing to be rasterized, and
   its ratio to the 4 ms budget: while the prompt plays in and while tokens are generated.
   The server decodes on one thread, leaving the other core of a 2-core machine to Chromium.

    .venv/bin/python bench/qwen3_shape.py [--rounds 4] [--prompt-tokens 600] [--tokens 48] [--page-tokens 96]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import CHROMIUM, interleaved, launch, speed_table
from capture_overhead import make_engine

from moeviz.capture.factory import native_available
from moeviz.fixtures import write_fixture
from moeviz.fixtures.models import QWEN3_30B_SHAPE

TARGET_MS = 4.0
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x * 2 "

# Times every requestAnimationFrame callback; for those after which the page had applied
# more tokens, reads one heatmap pixel (forces rasterization) inside the timing.
FRAME_TIMER = """(() => {
  const raf = window.requestAnimationFrame.bind(window);
  window.__frameTimes = [];
  let last = 0;
  window.requestAnimationFrame = (cb) => raf((ts) => {
    const t0 = performance.now();
    cb(ts);
    const applied = window.moeviz ? window.moeviz.applied : 0;
    if (applied !== last) {
      const c = document.getElementById('heatmap-canvas');
      if (c) c.getContext('2d').getImageData(0, 0, 1, 1);
      window.__frameTimes.push([performance.now() - t0, last, applied]);
      last = applied;
    }
  });
})();"""


def capture_overhead(model, rounds, n_prompt, n_decode, threads):
    modes = ["off", "callback"] + (["native", "native+probs"] if native_available() else [])
    if not native_available():
        print("note: the patched library is not installed; native capture not measured")
    engines = {m: make_engine(model, m, threads) for m in modes}
    info = next(iter(engines.values())).info
    print(f"model: {info.architecture}, {len(info.moe_layers)} MoE layers x {info.n_expert} experts, "
          f"top-{info.n_expert_used}, vocabulary {info.n_vocab}, hidden {info.n_embd}, "
          f"{os.path.getsize(model) / 2**20:.0f} MiB")
    e0 = engines["off"]
    prompt = e0.prompt_tokens(TEXT * (n_prompt // 30 + 2))[:n_prompt]
    results = interleaved(engines, prompt, n_decode, rounds, probs={"native+probs"})
    speed_table(results, "off", [("capture", 14)])
    print(f"(median of {rounds} interleaved rounds; {n_decode} decoded and {len(prompt)} prompt tokens each)")
    for e in engines.values():
        e.close()


def page_frames(model, n_tokens, runs):
    from playwright.sync_api import sync_playwright
    from serverproc import ServerProcess

    if not os.path.exists(CHROMIUM):
        print(f"\npage frame time: skipped, needs Debian's chromium at {CHROMIUM}")
        return
    with tempfile.TemporaryDirectory() as runs_dir, \
            ServerProcess("--model", model, "--n-ctx", "2048", "--threads", "1", "--data-dir", runs_dir,
                          timeout=300) as server, \
            sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(FRAME_TIMER)
        page.goto(server.url + "/")
        page.wait_for_function("window.moeviz !== undefined && window.moeviz.model !== null", timeout=120_000)
        page.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
        frames = {"prompt": [], "generated": []}
        n_applied = {"prompt": 0, "generated": 0}
        for run in range(runs):
            page.click("[data-mode=sequence]")
            page.select_option("#prompt-select", "")
            page.fill("#prompt-text", TEXT * 8)
            page.fill("#max-tokens", str(n_tokens))
            page.fill("#temperature", "0.8")
            page.fill("#seed", str(run))
            page.wait_for_function("!document.getElementById('generate').disabled")
            page.evaluate("window.__frameTimes.length = 0")
            page.click("#generate")
            page.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0",
                                   timeout=300_000)
            n_prompt = page.evaluate("moeviz.promptTokens")
            for ms, before, after in page.evaluate("window.__frameTimes.slice()"):
                if after <= before:
                    continue            # a new run clearing the old one
                phase = "prompt" if after <= n_prompt else "generated"
                frames[phase].append(ms)
                n_applied[phase] += after - before
        if errors:
            raise SystemExit(f"qwen3_shape: page error: {errors[0]}")
        browser.close()
    print(f"\npage frame time in Chromium, live from `moeviz serve` on this model ({runs} runs: a {n_prompt}-token "
          f"prompt, {n_tokens} generated tokens; sequence mode); frames that applied tokens, rasterized:")
    print(f"{'phase':<12}{'frames':>8}{'tokens/frame':>14}{'median':>10}{'p95':>10}{'x 4 ms (median, p95)':>24}")
    for phase, v in frames.items():
        if not v:
            continue
        v.sort()
        med, p95 = statistics.median(v), v[int(0.95 * (len(v) - 1))]
        print(f"{phase:<12}{len(v):>8}{n_applied[phase] / len(v):>14.2f}{med:>8.2f}ms{p95:>8.2f}ms"
              f"{med / TARGET_MS:>14.2f}, {p95 / TARGET_MS:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="use this GGUF instead of generating the Qwen3-30B-A3B-shaped fixture")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=600)
    ap.add_argument("--tokens", type=int, default=48, help="tokens decoded per capture measurement")
    ap.add_argument("--page-tokens", type=int, default=96, help="tokens generated per page run")
    ap.add_argument("--page-runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-page", action="store_true")
    ap.add_argument("--skip-capture", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            t0 = time.perf_counter()
            model = str(write_fixture(Path(tmp) / "qwen3-30b-a3b-shape.gguf", QWEN3_30B_SHAPE))
            print(f"model: generated the Qwen3-30B-A3B-shaped fixture in {time.perf_counter() - t0:.1f} s")
        if not args.skip_capture:
            capture_overhead(model, args.rounds, args.prompt_tokens, args.tokens, args.threads)
        if not args.skip_page:
            page_frames(model, args.page_tokens, args.page_runs)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
