"""What the browser tests share: Debian's chromium (never a downloaded browser build)
driven through Playwright, the marks every browser test module carries, the `browser`
and deepseek2 `server` fixtures, and Page, a page that records its websocket frames.

A test module takes them by name (`from browser import Page, browser, pytestmark`);
the fixtures are module-scoped: one browser, one server per module that uses them.
"""
import json
import os

import pytest
from serverproc import ServerProcess

from moeviz.trace.messages import TraceAssembler

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DORMANT_RGB = (22, 27, 38)      # index 0 of web/js/heatmap.js HEAT_PALETTE and panel.js PANEL_PALETTE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


def launch(playwright):
    """Debian's chromium, headless, from a started Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(fixture_models, tmp_path_factory):
    # deepseek2 fixture: a dense layer 0, 3 MoE layers x 16 experts, top-4, 2 shared experts
    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "1024",
                       "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


class Page:
    """A page (`browser.new_page(viewport=..., **options)`, 1300 x 1000 unless told) on the
    live server or a static site, recording every websocket frame it sends and receives."""

    def __init__(self, browser, url, viewport=None, **options):
        self.page = browser.new_page(viewport=viewport or {"width": 1300, "height": 1000}, **options)
        self.received, self.sent, self.errors = [], [], []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("websocket", self._socket)
        self.page.goto(url)
        self.page.wait_for_function("window.moeviz !== undefined")

    def _socket(self, ws):
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def js(self, expr):
        return self.page.evaluate(expr)

    def generate(self, *, prompt_name=None, text=None, max_tokens, temperature=0.0, seed=0, probs=False,
                 mode="sequence", stop_after=None):
        p = self.page
        p.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
        p.click(f"[data-mode={mode}]")
        if prompt_name:
            p.select_option("#prompt-select", prompt_name)
        else:
            p.select_option("#prompt-select", "")
            p.fill("#prompt-text", text)
        p.fill("#max-tokens", str(max_tokens))
        p.fill("#temperature", str(temperature))
        p.fill("#seed", str(seed))
        p.set_checked("#probs", probs)
        p.wait_for_function("!document.getElementById('generate').disabled")
        first = len(self.received)
        p.click("#generate")
        if stop_after is not None:
            p.wait_for_function(f"moeviz.tokens > moeviz.promptTokens + {stop_after}", timeout=30_000)
            p.click("#stop")
        p.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0", timeout=30_000)
        self.settle()
        run = [m for m in self.received[first:] if m["type"] != "queued"]
        assert run[-1]["type"] == "done", run[-1]
        asm = TraceAssembler()
        for m in [self.received[0]] + run:          # the model message came on connect
            asm.add(m)
        return asm.trace(), run[-1]

    def settle(self):
        """Let two more animation frames run, so every view has drawn the latest state."""
        n = self.js("moeviz.frames")
        self.page.wait_for_function(f"moeviz.frames >= {n + 2}")

    def pixel(self, canvas, x, y):
        return self.js(f"Array.from(document.getElementById('{canvas}').getContext('2d')"
                       f".getImageData({x}, {y}, 1, 1).data.slice(0, 3))")

    def cell_pixels(self, view, L, E):
        """The colour drawn at the centre of every (MoE layer, expert) cell of a view."""
        return self.js(f"""(() => {{
            const c = document.getElementById('{view}-canvas').getContext('2d'), out = [];
            for (let l = 0; l < {L}; l++) for (let e = 0; e < {E}; e++) {{
                const p = moeviz.cellCenter('{view}', l, e);
                out.push(Array.from(c.getImageData(p.x, p.y, 1, 1).data.slice(0, 3)));
            }}
            return out; }})()""")

    def close(self):
        self.page.close()
