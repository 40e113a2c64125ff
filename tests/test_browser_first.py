"""The first ten minutes (issue 24), in real Chromium against a real `moeviz serve`, at
390 x 844, 1440 x 900 and 2560 x 1440: Generate and the prompt picker in the first
screen, the dormant figure in the header without scrolling, plain labels, tap text on
touch screens, a playback speed (select and keys) that really changes the pace, "live"
that jumps to the newest token, masked experts counted as masked, not dormant, and
axe-core clean.
"""
import pytest
from browser import Page, browser, pytestmark, server  # noqa: F401
from conftest import run_cli
from test_browser_page import axe_source, axe_violations  # noqa: F401

SIZES = [(390, 844), (1440, 900), (2560, 1440)]

BOX = """(id) => { const r = document.getElementById(id).getBoundingClientRect();
  return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, visible: r.width > 0 && r.height > 0 }; }"""


def in_first_screen(pg, id, w, h):
    b = pg.page.evaluate(BOX, id)
    return b["visible"] and b["top"] >= 0 and b["bottom"] <= h and b["left"] >= 0 and b["right"] <= w


def generate(pg, max_tokens=12, mode="single"):
    p = pg.page
    p.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
    p.click(f"[data-mode={mode}]")
    p.select_option("#prompt-select", index=1)
    p.fill("#max-tokens", str(max_tokens))
    p.fill("#temperature", "0")
    p.click("#generate")


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_first_screen_speed_live_and_axe(server, browser, axe_source, size):
    w, h = size
    pg = Page(browser, server.url + "/", viewport={"width": w, "height": h})
    try:
        p = pg.page
        # what a newcomer needs is on the first screen: the picker and Generate, the dormant figure
        for id in ("prompt-select", "generate", "stat-dormant"):
            assert in_first_screen(pg, id, w, h), id
        assert [t.strip() for t in p.locator(".stats dt").all_inner_texts()] == \
            ["parameters", "active per token", "token", "experts used", "dormant"]
        assert p.is_visible(".hover-only") and p.is_hidden(".touch-only")
        # the sampler's settings and the routing's apart, each named in plain words
        assert p.inner_text("#sampling-label").startswith("sampling") and p.inner_text("#routing-label").startswith("routing")
        assert p.evaluate("document.getElementById('temperature').closest('[role=group]').getAttribute('aria-labelledby')") \
            == "sampling-label"
        assert p.evaluate("document.getElementById('wi-k').closest('[role=group]').getAttribute('aria-labelledby')") \
            == "routing-label"
        assert axe_violations(pg, axe_source) == []

        # a slow run in single-token mode: the page falls behind the server; live catches up
        generate(pg, max_tokens=24, mode="single")
        p.wait_for_function("moeviz.done && moeviz.tokens > 0", timeout=60_000)
        assert pg.js("moeviz.applied") < pg.js("moeviz.tokens")       # still playing, behind
        assert p.is_enabled("#pb-live")
        if w < 700:
            p.evaluate("window.scrollTo(0, 0)")
        p.keyboard.press("l")
        pg.settle()
        assert pg.js("moeviz.applied") == pg.js("moeviz.tokens") and p.is_disabled("#pb-live")

        # the speed: 1x vs 4x in single-token mode, from the first token, tokens per second
        def rate(speed):
            p.select_option("#pb-speed", str(speed))
            p.click("#pb-start")
            p.click("#pb-play")
            t0 = pg.js("[performance.now(), moeviz.applied]")
            p.wait_for_timeout(2000)
            t1 = pg.js("[performance.now(), moeviz.applied]")
            p.click("#pb-play")
            return (t1[1] - t0[1]) / (t1[0] - t0[0]) * 1000
        slow, fast = rate(1), rate(4)
        assert pg.js("moeviz.speed") == 4
        assert 0.5 < slow < 3 and fast > 2.5 * slow, (slow, fast)
        # the keys: ] faster, [ slower, within 1/4x .. 8x
        p.mouse.click(2, 2)
        for _ in range(5):
            p.keyboard.press("]")
        assert pg.js("moeviz.speed") == 8
        for _ in range(9):
            p.keyboard.press("[")
        assert pg.js("moeviz.speed") == 0.25 and p.input_value("#pb-speed") == "0.25"
        p.keyboard.press("?")
        assert "slower / faster" in p.inner_text("#keys") and "live" in p.inner_text("#keys")
        p.keyboard.press("Escape")
        # the header's dormant figure is the dormant card's
        d = pg.js("moeviz.dormant.all")
        assert p.inner_text("#stat-dormant").startswith(f"{d['total']} / ")
        assert in_first_screen(pg, "stat-dormant", w, h) or w < 700
        assert axe_violations(pg, axe_source) == []
        assert pg.errors == []
    finally:
        pg.close()


def test_touch_screens_get_tap_text(server, browser):
    pg = Page(browser, server.url + "/", viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        assert pg.page.is_visible(".touch-only") and pg.page.is_hidden(".hover-only")
        assert "tap a token" in pg.page.inner_text("#stream h2")
    finally:
        pg.close()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_masked_experts_are_counted_as_masked_not_dormant(server, browser, axe_source, fixture_models, tmp_path, size):
    # a run of the page's model (deepseek2 fixture: MoE layers 1-3, 16 experts) with 3 experts masked
    out = tmp_path / "masked.json"
    run_cli("record", "--model", fixture_models["deepseek2"], "--prompt", "Hello there", "--max-tokens", "6",
            "--temperature", "0", "--mask", "1:0,2:5,3:7", "--out", out, check=True)
    w, h = size
    pg = Page(browser, server.url + "/", viewport={"width": w, "height": h})
    try:
        pg.page.set_input_files("#open-file", str(out))
        pg.page.wait_for_function("moeviz.source && moeviz.source.kind === 'file' && moeviz.done")
        pg.page.wait_for_function("moeviz.applied === moeviz.tokens")
        pg.settle()
        d = pg.js("moeviz.dormant.all")
        counts = pg.js("moeviz.counts('all')")
        E = 16
        masked_cells = {0 * E + 0, 1 * E + 5, 2 * E + 7}
        assert d["masked"] == 3 and d["maskedPerLayer"] == [1, 1, 1]
        assert d["total"] == sum(1 for i, c in enumerate(counts) if c == 0 and i not in masked_cells)
        assert abs(d["fraction"] - d["total"] / (3 * E - 3)) < 1e-12
        assert "3 masked" in pg.page.inner_text("#dormant-masked")
        assert pg.page.inner_text("#stat-dormant").startswith(f"{d['total']} / 45 ")
        # an opened file shows the REPLAY card a permalink has, on top of the Generate card,
        # its title saying what differs from the model as it is, sampler and routing apart
        assert pg.page.is_visible("#replay-note") and pg.page.is_visible("#generate")
        assert pg.page.evaluate(BOX, "replay-note")["top"] < pg.page.evaluate(BOX, "prompt-select")["top"]
        note = pg.page.inner_text("#replay-note")
        assert "3 experts masked" in note and "masked.json" in note, note
        assert pg.page.inner_text("#replay-prompt") == "Hello there"
        line = pg.page.inner_text("#replay-settings")
        assert line.startswith("sampling: up to 6 new tokens, temperature 0") and "routing: 4 experts per token, 3 masked" in line
        assert in_first_screen(pg, "replay-note", w, h)
        assert axe_violations(pg, axe_source) == []
        assert pg.errors == []
    finally:
        pg.close()


@pytest.fixture(scope="module")
def site(fixture_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    run_cli("export", "--out", out, "--model", fixture_models["deepseek2"], "--max-tokens", 2, check=True)
    return out


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_an_exported_site_has_one_link_per_run(site, browser, axe_source, size):
    import json

    from serverproc import static_server

    runs = json.loads((site / "manifest.json").read_text())["runs"]
    assert len(runs) >= 3
    w, h = size
    with static_server(site) as url:
        pg = Page(browser, url + "/", viewport={"width": w, "height": h})
        try:
            p = pg.page
            p.wait_for_function("moeviz.done && moeviz.source", timeout=30_000)
            assert in_first_screen(pg, "run-select", w, h) and in_first_screen(pg, "replay-note", w, h)
            p.select_option("#run-select", runs[1]["file"])
            p.wait_for_function(f"moeviz.source.name === {json.dumps(runs[1]['title'])} && moeviz.done")
            assert pg.js("location.hash") == f"#run={runs[1]['name']}"
            assert axe_violations(pg, axe_source) == []
        finally:
            pg.close()
        # the link opens that run; back goes to the one before
        pg = Page(browser, f"{url}/#run={runs[2]['name']}", viewport={"width": w, "height": h})
        try:
            p = pg.page
            p.wait_for_function(f"moeviz.source && moeviz.source.name === {json.dumps(runs[2]['title'])} && moeviz.done",
                                timeout=30_000)
            assert p.input_value("#run-select") == runs[2]["file"]
            p.select_option("#run-select", runs[0]["file"])
            p.wait_for_function(f"moeviz.source.name === {json.dumps(runs[0]['title'])}")
            p.go_back()
            p.wait_for_function(f"moeviz.source.name === {json.dumps(runs[2]['title'])} && moeviz.done")
            assert p.input_value("#run-select") == runs[2]["file"]
            assert pg.errors == []
        finally:
            pg.close()


HOVER = """([row, e]) => {
  const c = document.getElementById('heatmap-canvas'), r = c.getBoundingClientRect(), p = moeviz.cellCenter('heatmap', row, e);
  return [r.left + p.x * r.width / c.width, r.top + p.y * r.height / c.height]; }"""
CLEAR = """() => { const t = document.getElementById('tooltip'), c = document.getElementById('cell-info');
  if (t.hidden || c.hidden) return true;
  const a = t.getBoundingClientRect(), b = c.getBoundingClientRect();
  return !(a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom); }"""


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_tooltip_never_covers_the_expert_card(server, browser, size):
    w, h = size
    pg = Page(browser, server.url + "/", viewport={"width": w, "height": h})
    try:
        p = pg.page
        generate(pg, max_tokens=6, mode="sequence")
        p.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0", timeout=60_000)
        p.locator("#heatmap-canvas").scroll_into_view_if_needed()
        L, E = pg.js("moeviz.model.moe_layers.length"), pg.js("moeviz.model.n_expert")
        x, y = p.evaluate(HOVER, [1, E // 2])
        p.mouse.click(x, y)
        pg.settle()
        assert p.is_visible("#cell-info") and pg.js(CLEAR)
        shown = 0
        for row in range(L):
            for e in range(E):
                x, y = p.evaluate(HOVER, [row, e])
                p.mouse.move(x, y)
                assert pg.js(CLEAR), (row, e)
                shown += pg.js("!document.getElementById('tooltip').hidden")
        assert shown > L * E // 2          # still a tooltip wherever there is room for one
        assert pg.errors == []
    finally:
        pg.close()


def test_a_tap_opens_the_card_and_no_tooltip(server, browser):
    pg = Page(browser, server.url + "/", viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        p = pg.page
        generate(pg, max_tokens=4, mode="sequence")
        p.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0", timeout=60_000)
        p.locator("#heatmap-canvas").scroll_into_view_if_needed()
        x, y = p.evaluate(HOVER, [0, 3])
        p.touchscreen.tap(x, y)
        pg.settle()
        assert p.is_visible("#cell-info") and p.is_hidden("#tooltip")
        assert pg.js("moeviz.chosenCell.expert") == 3
    finally:
        pg.close()


def test_readmes_screenshot_script_shoots_the_real_page(tmp_path):
    import struct
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "screenshot.py"
    out = tmp_path / "page.png"
    r = subprocess.run([sys.executable, str(path), "--out", str(out), "--width", "800", "--height", "600"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == f"screenshot: wrote {out} (800 x 600)", r.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (800, 600)
    readme = (path.parents[1] / "README.md").read_text()
    assert "](docs/img/page.png)" in readme and (path.parent / "img" / "page.png").is_file()


@pytest.mark.parametrize("size", [(390, 844), (1440, 900)], ids=["390x844", "1440x900"])
def test_compare_in_a_fresh_page_lists_the_servers_runs(server, browser, size):
    w, h = size
    a = Page(browser, server.url + "/", viewport={"width": w, "height": h})
    try:
        for tokens in (3, 5):               # two runs: Compare needs two
            generate(a, max_tokens=tokens, mode="sequence")
            a.page.wait_for_function(f"moeviz.done && moeviz.tokens > 0 && moeviz.tokens - moeviz.promptTokens === {tokens}",
                                     timeout=60_000)
        title, n = a.js("moeviz.source.name").split(" · ")[0], a.js("moeviz.tokens")
        assert a.js("moeviz.runs.filter((r) => r.kind === 'live').length") == 2      # its own runs, once each
        listed = a.js("moeviz.runs.length")
    finally:
        a.close()
    b = Page(browser, server.url + "/", viewport={"width": w, "height": h})
    try:
        b.page.wait_for_function("moeviz.runs.length > 1", timeout=30_000)
        runs = b.js("moeviz.runs")
        assert len(runs) == listed            # every run of the server, none twice
        assert any(r["kind"] == "server" and r["name"].startswith(title) for r in runs), runs
        assert b.page.is_enabled("#compare-all")
        b.page.click("#compare-all")
        b.page.wait_for_function("moeviz.compare() !== null", timeout=30_000)
        fig = b.js("moeviz.compare()")
        assert fig["error"] is None and len(fig["runs"]) == len(runs), fig
        # the listed run's figures come from its stored trace
        assert any(r["tokens"] == n for r in b.js("moeviz.runs"))
        assert b.errors == []
    finally:
        b.close()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_generating_past_the_trained_context_is_warned_in_one_line(browser, tmp_path_factory, size):
    """A model trained on 24-token sequences (a fixture's GGUF context length), served with
    room for more: the page warns before (max tokens past it) and during a run past it."""
    from serverproc import ServerProcess

    from moeviz.fixtures import write_fixture

    folder = tmp_path_factory.mktemp("short")
    model = write_fixture(folder / "short.gguf", arch="llama", n_ctx_train=24)
    w, h = size
    with ServerProcess("--model", model, "--n-ctx", "256", "--data-dir", folder / "runs") as srv:
        pg = Page(browser, srv.url + "/", viewport={"width": w, "height": h})
        try:
            p = pg.page
            p.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
            p.fill("#max-tokens", "8")
            p.wait_for_selector("#ctx-warning", state="hidden")
            p.fill("#max-tokens", "40")
            p.wait_for_selector("#ctx-warning", state="visible")
            assert p.inner_text("#ctx-warning") == ("max tokens 40 goes past the 24 tokens moeviz-fixture-llama was "
                                                    "trained on: what it generates past them is unreliable")
            assert in_first_screen(pg, "ctx-warning", w, h)
            p.select_option("#prompt-select", "")
            p.fill("#prompt-text", "hello")
            p.fill("#temperature", "0")
            p.click("#generate")
            p.wait_for_function("moeviz.done && moeviz.tokens > 24", timeout=60_000)
            pg.settle()
            assert p.inner_text("#ctx-warning") == ("this run went past the 24 tokens moeviz-fixture-llama was trained on: "
                                                    "what it generated after token 24 is unreliable")
            assert pg.errors == []
        finally:
            pg.close()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_a_permalinks_replay_card_is_on_the_first_screen(server, browser, axe_source, size):
    w, h = size
    a = Page(browser, server.url + "/", viewport={"width": 1440, "height": 900})
    try:
        generate(a, max_tokens=4, mode="sequence")
        a.page.wait_for_function("moeviz.done && moeviz.tokens > 0", timeout=60_000)
        a.page.wait_for_function("document.getElementById('permalink').getAttribute('href')")
        link = a.page.get_attribute("#permalink", "href")
    finally:
        a.close()
    pg = Page(browser, server.url + link, viewport={"width": w, "height": h})
    try:
        pg.page.wait_for_function("moeviz.done && moeviz.source", timeout=30_000)
        for id in ("replay-note", "replay-prompt", "stat-dormant"):
            assert in_first_screen(pg, id, w, h), id
        assert pg.page.inner_text("#replay-settings").startswith("sampling: up to 4 new tokens")
        assert axe_violations(pg, axe_source) == []
    finally:
        pg.close()


SCROLL_EDGE = """(sel) => {
  const e = document.querySelector(sel), r = e.getBoundingClientRect();
  return { scrolls: e.scrollWidth > e.clientWidth + 1, left: r.left, right: r.right, top: r.top, bottom: r.bottom }; }"""


def test_a_wide_table_on_a_phone_shows_that_it_scrolls(server, browser):
    pg = Page(browser, server.url + "/", viewport={"width": 390, "height": 844})
    try:
        p = pg.page
        generate(pg, max_tokens=8, mode="sequence")
        p.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0", timeout=60_000)
        box = p.locator("#analysis .an-scroll").first
        box.scroll_into_view_if_needed()
        pg.settle()
        edge = p.evaluate(SCROLL_EDGE, "#analysis .an-scroll")
        assert edge["scrolls"], edge            # the balance table is wider than a phone
        shot = box.screenshot()
        import base64
        # the screenshot's pixels, read back through a canvas: the left and right edges
        left, right = p.evaluate("""async (b64) => {
          const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
          const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
          const x = c.getContext('2d'); x.drawImage(img, 0, 0);
          // the reddest pixel within 20 px of each edge (rows' borders, text, a scrollbar aside)
          const red = (x0, x1) => { let best = [0, 0, 255];
            for (let y = 0; y < img.height; y++) for (let px = x0; px < x1; px++) { const d = x.getImageData(px, y, 1, 1).data;
              if (d[0] - d[2] > best[0] - best[2]) best = [d[0], d[1], d[2]]; }
            return best; };
          return [red(0, 20), red(img.width - 20, img.width)]; }""",
                                 base64.b64encode(shot).decode())
        # the right edge (more to see) is tinted orange; the left edge (nothing scrolled yet) is not
        assert right[0] > right[2] + 20 and right[0] > left[0] + 20, (left, right)
    finally:
        pg.close()
