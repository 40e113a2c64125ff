"""README's picture of the page, made from the real page: starts `moeviz serve` (the
built-in demo model unless --model), drives Debian's chromium through Playwright to
generate one bundled prompt at temperature 0, lets playback reach the end, and saves
the page as a PNG.

    python docs/screenshot.py                       # -> docs/img/page.png (1440 x 900)
    python docs/screenshot.py --width 390 --height 844 --out docs/img/page-phone.png

Run it again after a change to the page, so that README shows what a visitor sees.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PROMPT = "code-fibonacci"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: str | None, data_dir: str):
    port = _free_port()
    args = [sys.executable, "-m", "moeviz", "serve", "--port", str(port), "--data-dir", data_dir]
    if model:
        args += ["--model", model]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"screenshot: moeviz serve exited: {proc.stderr.read().strip()}")
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("screenshot: moeviz serve did not come up in 120 s")


def shoot(url: str, out: Path, width: int, height: int, prompt: str = PROMPT, max_tokens: int = 48) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(url + "/")
        page.wait_for_function("window.moeviz && document.querySelectorAll('#prompt-select option').length > 1")
        page.select_option("#prompt-select", prompt)
        page.fill("#max-tokens", str(max_tokens))
        page.fill("#temperature", "0")
        page.wait_for_function("!document.getElementById('generate').disabled")
        page.click("#generate")
        page.wait_for_function("moeviz.done && moeviz.tokens > 0 && moeviz.applied === moeviz.tokens", timeout=120_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(600)          # the last glow fades
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        page.screenshot(path=str(tmp), type="png")
        tmp.replace(out)                    # never a half-written picture
        browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "page.png"))
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--model", default=None, help="GGUF model (default: the built-in demo model)")
    ap.add_argument("--prompt", default=PROMPT, help=f"bundled prompt to generate (default {PROMPT})")
    args = ap.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"screenshot: needs Debian's chromium at {CHROMIUM} (make chromium)")
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = _serve(args.model, data_dir)
        try:
            shoot(url, Path(args.out), args.width, args.height, args.prompt)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"screenshot: wrote {args.out} ({args.width} x {args.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
