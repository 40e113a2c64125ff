"""The page a first-time visitor sees, in real Chromium against a real `moeviz serve`:
the animation's frames against the trace (single, sequence, all at once, reduced
motion), the layout at 390 / 1440 / 2560 px (no horizontal overflow, nothing clipped in
the header, nothing moving during a run), axe-core's accessibility check, the keys,
the chosen heatmap cell, the tokens toggle, runs named by their prompts, permalink
pages and the bad-permalink page, chat-template tokens, and the empty state.

axe-core comes from npm into ~/.cache/moeviz/axe (or $MOEVIZ_CACHE/axe), installed on
first use as `make axe` does; it is injected into the page by Playwright.
"""
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import DORMANT_RGB, Page, browser, pytestmark, server  # noqa: F401
from conftest import run_cli
from serverproc import static_server
from test_browser import counts

AXE_VERSION = "4.14.1"
AXE_DIR = Path(os.environ.get("MOEVIZ_CACHE") or Path.home() / ".cache" / "moeviz") / "axe"
WIDTHS = (390, 1440, 2560)
SELECTED_MIN, DIM_MAX = 166, 151       # web/js/flow.js: a selected expert is never under, a dimmed one never over


@pytest.fixture(scope="module")
def axe_source():
    js = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not js.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("axe-core is not installed and npm is missing to install it")
        subprocess.run([npm, "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund", "--silent",
                        f"axe-core@{AXE_VERSION}"], check=True, timeout=300)
    return js.read_text()


def open_page(browser, url, width=1440, **kw):
    return Page(browser, url, viewport={"width": width, "height": 844 if width < 700 else 1000}, **kw)


# ---- the panel's pixels, as palette indices ------------------------------------

PANEL_LEVELS = """async () => {
  const { PANEL_PALETTE } = await import('/static/js/panel.js');
  const idx = new Map();
  PANEL_PALETTE.u32.forEach((v, i) => { if (!idx.has(v)) idx.set(v, i); });
  const s = moeviz.model, L = s.moe_layers.length, E = s.n_expert;
  const ctx = document.getElementById('panel-canvas').getContext('2d'), out = [];
  for (let l = 0; l < L; l++) {
    const row = [];
    for (let e = 0; e < E; e++) {
      const p = moeviz.cellCenter('panel', l, e), d = ctx.getImageData(p.x, p.y, 1, 1).data;
      const v = ((255 << 24) | (d[2] << 16) | (d[1] << 8) | d[0]) >>> 0;
      row.push(idx.has(v) ? idx.get(v) : -1);
    }
    out.push(row);
  }
  return { flow: moeviz.flow, levels: out, applied: moeviz.applied };
}"""


def frames_until_still(pg, limit=400):
    """Panel frames (what moeviz.flow says was drawn, and the pixels drawn) until the panel stops moving."""
    out = []
    for _ in range(limit):
        f = pg.page.evaluate(PANEL_LEVELS)
        out.append(f)
        if f["flow"] and not f["flow"]["sweeping"] and not f["flow"]["dimmed"] and len(out) > 3:
            # one more after the glow has had time to fade (it is not a layer change)
            pg.page.wait_for_timeout(350)
            out.append(pg.page.evaluate(PANEL_LEVELS))
            return out
        pg.page.wait_for_timeout(15)
    raise AssertionError("the panel never came to rest")


def lit(levels, layer):
    return {e for e, v in enumerate(levels[layer]) if v >= SELECTED_MIN}


def dim(levels, layer):
    return {e for e, v in enumerate(levels[layer]) if 128 <= v <= DIM_MAX}


def check_token_frame(f, trace):
    """Lit experts at layer l of token t are the trace's, for the layers the token has reached;
    below the sweep front only the dimmed earlier token's experts, dim."""
    flow, lv = f["flow"], f["levels"]
    assert flow["kind"] == "token"
    t, front, L = flow["t"], flow["front"], flow["layers"]
    dimmed = [d["t"] for d in flow["dimmed"]]
    for layer in range(L):
        if layer < front:
            assert lit(lv, layer) == set(trace.expert_ids[t, layer].tolist()), (t, layer, front)
            if flow["sweeping"]:
                assert dim(lv, layer) == set(), (t, layer)
        else:
            assert lit(lv, layer) == set(), (t, layer, front)
            want = set().union(*(set(trace.expert_ids[d, layer].tolist()) for d in dimmed)) if dimmed else set()
            assert dim(lv, layer) == want, (t, layer, front, dimmed)


def run_trace(pg, **kw):
    trace, done = pg.generate(**kw)
    return trace, done


def test_single_sequence_and_all_at_once_frames_match_the_trace(server, browser):
    pg = open_page(browser, server.url + "/")
    try:
        trace, _ = run_trace(pg, prompt_name="code-fibonacci", max_tokens=6, mode="all")
        n, n_prompt = trace.n_tokens, trace.n_prompt
        L = trace.expert_ids.shape[1]

        # single: a token travels down the layers; the token before stays dim below it
        pg.page.click("[data-mode=single]")
        pg.page.fill("#pb-scrub", str(n_prompt))
        pg.settle()
        pg.page.click("#pb-fwd")
        frames = frames_until_still(pg)
        assert all(f["flow"]["t"] == n_prompt for f in frames)
        for f in frames:
            check_token_frame(f, trace)
        fronts = {f["flow"]["front"] for f in frames}
        assert fronts & set(range(1, L)), f"no frame caught the sweep part-way: fronts {fronts}"
        assert any(f["flow"]["dimmed"] == [{"kind": "token", "t": n_prompt - 1}] for f in frames
                   if f["flow"]["sweeping"]), "the previous token was not dimmed during the sweep"
        # at rest: the whole token, brighter where the gate weight is larger
        last = frames[-1]["levels"]
        for layer in range(L):
            ids, w = trace.expert_ids[n_prompt, layer], np.abs(trace.weights[n_prompt, layer])
            order = [last[layer][e] for e in ids[np.argsort(-w, kind="stable")]]
            assert order == sorted(order, reverse=True), (layer, order)

        # all at once: the prompt's whole prefill batch lights together, layer by layer
        pg.page.click("#pb-start")
        pg.page.click("[data-mode=all]")
        pg.page.click("#pb-fwd")
        frames = frames_until_still(pg)
        assert all(f["flow"]["kind"] == "batch" and f["flow"]["range"] == [0, n_prompt] for f in frames)
        chosen = counts(trace, n_prompt)["all"]
        for f in frames:
            for layer in range(L):
                want = set(np.flatnonzero(chosen[layer]).tolist()) if layer < f["flow"]["front"] else set()
                assert lit(f["levels"], layer) == want, (layer, f["flow"])
        rest = frames[-1]["levels"]
        for layer in range(L):          # the expert most of the batch chose is drawn brightest
            assert rest[layer][int(chosen[layer].argmax())] == max(rest[layer])
        assert "prompt batch #0" in pg.page.inner_text("#panel-title")

        # sequence: tokens in order, each lit whole, the last ones fading dim behind it
        pg.page.click("[data-mode=sequence]")
        pg.page.fill("#pb-scrub", str(n_prompt))
        pg.settle()
        pg.page.click("#pb-play")
        seen = []
        while True:
            f = pg.page.evaluate(PANEL_LEVELS)
            fl = f["flow"]
            t, lv = fl["t"], f["levels"]
            for layer in range(L):
                assert lit(lv, layer) == set(trace.expert_ids[t, layer].tolist())
                trail = set().union(*(set(trace.expert_ids[d["t"], layer].tolist()) for d in fl["dimmed"])) \
                    if fl["dimmed"] else set()
                assert dim(lv, layer) <= trail
            seen.append((t, len(fl["dimmed"])))
            if t == n - 1 and not fl["dimmed"]:
                break
            pg.page.wait_for_timeout(10)
        assert [t for t, _ in seen] == sorted(t for t, _ in seen) and any(d for _, d in seen)
        assert pg.errors == []
    finally:
        pg.close()


def test_reduced_motion_shows_each_step_whole(server, browser):
    pg = open_page(browser, server.url + "/", reduced_motion="reduce")
    try:
        assert pg.js("moeviz.reducedMotion") is True
        trace, _ = run_trace(pg, prompt_name="code-fibonacci", max_tokens=3, mode="all")
        pg.page.click("[data-mode=single]")
        pg.page.fill("#pb-scrub", str(trace.n_prompt))
        pg.settle()
        pg.page.click("#pb-fwd")
        pg.settle()
        f = pg.page.evaluate(PANEL_LEVELS)
        assert f["flow"]["t"] == trace.n_prompt and f["flow"]["front"] == f["flow"]["layers"]
        assert not f["flow"]["sweeping"] and f["flow"]["dimmed"] == []
        check_token_frame(f, trace)
        assert pg.errors == []
    finally:
        pg.close()


# ---- layout, accessibility ----------------------------------------------------------------

LAYOUT = """() => {
  const clipped = [];
  for (const id of ['model-name', 'stat-total', 'stat-active', 'stat-token', 'stat-hit', 'keys-button']) {
    const e = document.getElementById(id), r = e.getBoundingClientRect(), dd = e.closest('dd') || e;
    if (r.left < 0 || r.right > innerWidth + 0.5 || dd.scrollWidth > dd.clientWidth + 1) clipped.push(id);
  }
  const top = (id) => Math.round(document.getElementById(id).getBoundingClientRect().top + scrollY);
  return { scrollWidth: document.documentElement.scrollWidth, innerWidth, clipped,
           panel: top('panel-canvas'), heatmap: top('heatmap-canvas'), tokens: top('tokens'),
           order: ['controls', 'stream', 'panel'].map(top) };
}"""


def axe_violations(pg, source):
    pg.page.add_script_tag(content=source)
    result = pg.page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("width", WIDTHS)
def test_layout_fits_stays_put_and_passes_axe(server, browser, axe_source, width):
    pg = open_page(browser, server.url + "/", width=width)
    try:
        before = pg.js(LAYOUT)
        assert before["scrollWidth"] <= before["innerWidth"], before
        assert before["clipped"] == [], before
        # the empty state says what will happen instead of showing zeros as if counted
        assert pg.page.is_visible("#panel-empty") and "No run yet" in pg.page.inner_text("#panel-empty")
        assert pg.page.get_attribute("#dormant", "data-empty") == "true" and pg.page.is_visible(".dormant-empty")
        assert pg.page.is_disabled("#pb-play") and pg.page.inner_text("#pb-play") == "▶"
        assert pg.page.is_visible("#analysis .an-empty") and pg.page.is_hidden("#analysis .an-body")
        assert axe_violations(pg, axe_source) == []
        if width < 700:                  # a phone: Generate first, then the visualization
            assert before["order"] == sorted(before["order"])

        # while a run plays, nothing above the analysis moves
        pg.page.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
        pg.page.click("[data-mode=sequence]")
        pg.page.fill("#max-tokens", "24")
        pg.page.click("#generate")
        tops = []
        while not pg.js("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0"):
            tops.append(pg.js(LAYOUT))
            pg.page.wait_for_timeout(20)
        pg.settle()
        after = pg.js(LAYOUT)
        for key in ("panel", "heatmap", "tokens"):
            assert {t[key] for t in tops + [after]} == {tops[0][key]}, key
        if width < 700:
            assert pg.js("scrollY") > 0 and tops[0]["tokens"] >= pg.js("scrollY") - 1   # Generate brought the run into view
        else:
            assert tops[0]["panel"] == before["panel"]
        assert after["scrollWidth"] <= after["innerWidth"] and after["clipped"] == [], after
        assert pg.page.is_hidden("#panel-empty")
        assert axe_violations(pg, axe_source) == []
        assert pg.errors == []
    finally:
        pg.close()


# ---- keys, the chosen cell, the tokens toggle, TOKEN, the analysis' keys and thresholds ---------

def test_keys_chosen_cell_tokens_toggle_and_pinned_token(server, browser):
    pg = open_page(browser, server.url + "/")
    try:
        trace, _ = run_trace(pg, prompt_name="code-fibonacci", max_tokens=8, mode="all")
        n = trace.n_tokens
        c = counts(trace)
        L, E = c["all"].shape
        # page keys: arrows step even with a playback button focused (it keeps only space)
        pg.page.click("[data-mode=all]")
        pg.page.keyboard.press("ArrowLeft")
        pg.settle()
        assert pg.js("moeviz.applied") == n - 1
        pg.page.mouse.click(5, pg.js("document.querySelector('.intro').getBoundingClientRect().bottom") - 4)
        pg.page.keyboard.press("Home")
        pg.settle()
        assert pg.js("moeviz.applied") == 0
        pg.page.keyboard.press("End")
        pg.page.keyboard.press(" ")                  # at the end: play starts over
        pg.settle()
        assert pg.js("moeviz.playing")
        pg.page.keyboard.press(" ")
        pg.settle()
        assert not pg.js("moeviz.playing")
        pg.page.keyboard.press("End")
        pg.page.keyboard.press("?")
        assert pg.page.is_visible("#keys") and "play / pause" in pg.page.inner_text("#keys")
        pg.page.keyboard.press("Escape")
        assert pg.page.is_hidden("#keys")

        # the token stream: focusable, arrows highlight, Enter pins; TOKEN follows the pin
        pg.page.focus("#tokens")
        pg.page.keyboard.press("Home")
        for _ in range(3):
            pg.page.keyboard.press("ArrowRight")
        pg.page.keyboard.press("Enter")
        pg.settle()
        assert pg.js("Array.from(document.querySelectorAll('#tokens .pinned'), e => Number(e.dataset.i))") == [3]
        assert pg.page.inner_text("#stat-token") == f"#3 / {n}"
        assert pg.page.inner_text("#stat-token-text").startswith("pinned")
        assert pg.js("moeviz.panelToken") == 3 and pg.js("moeviz.applied") == n       # the cursor did not move
        pg.page.keyboard.press("Enter")              # unpin
        pg.page.keyboard.press("Escape")
        pg.settle()
        assert pg.page.inner_text("#stat-token") == f"{n} / {n}"

        # the heatmap: focusable; arrows move an outline, Enter chooses the cell
        pg.page.focus("#heatmap-canvas")
        for key in ("ArrowRight", "ArrowRight", "ArrowDown", "Enter"):
            pg.page.keyboard.press(key)
        pg.settle()
        layer = trace.model["moe_layers"][1]
        assert pg.js("moeviz.chosenCell") == {"layer": layer, "expert": 2}
        card = pg.page.locator("#cell-info")
        assert card.is_visible() and card.get_attribute("data-layer") == str(layer)
        assert f"selected by {c['all'][1, 2]} of {n} tokens" in card.inner_text()
        assert pg.js("moeviz.analysis({groups: []}).panel.tab") == "profile"

        # a click chooses too: the outline sits on that cell, the card beside it
        pg.page.keyboard.press("Escape")             # the card closes (it could cover the cell clicked next)
        pg.settle()
        assert pg.page.is_hidden("#cell-info")
        row, expert = 2, int(c["all"][2].argmax())
        box = pg.js("(() => { const r = document.getElementById('heatmap-canvas').getBoundingClientRect(); "
                    "return [r.left, r.top, devicePixelRatio]; })()")
        p = pg.page.evaluate("([r, e]) => moeviz.cellCenter('heatmap', r, e)", [row, expert])
        x, y = box[0] + p["x"] / box[2], box[1] + p["y"] / box[2]
        pg.page.mouse.click(x, y)
        pg.settle()
        assert pg.js("moeviz.chosenCell") == {"layer": trace.model["moe_layers"][2], "expert": expert}
        o = pg.js("(() => { const r = document.getElementById('cell-outline').getBoundingClientRect(); "
                  "return [r.left, r.top, r.right, r.bottom]; })()")
        assert o[0] < x < o[2] and o[1] < y < o[3]
        cr = pg.js("(() => { const r = document.getElementById('cell-info').getBoundingClientRect(); "
                   "return [r.left, r.top, r.right, r.bottom]; })()")
        assert min(abs(cr[0] - o[2]), abs(cr[2] - o[0]), abs(cr[1] - o[3])) < 20    # beside the cell
        pg.page.click("#cell-info .ci-close")
        pg.settle()
        assert pg.page.is_hidden("#cell-info")

        # one tokens toggle for the heatmap and the dormant counts
        pg.page.click("#heatmap [data-tokens=generated]")
        pg.settle()
        assert pg.js("moeviz.heatmapTokens") == "generated" and pg.js("moeviz.dormantTokens") == "generated"
        assert pg.page.get_attribute("#dormant [data-tokens=generated]", "aria-pressed") == "true"
        pixels = np.array(pg.cell_pixels("heatmap", L, E)).reshape(L, E, 3)
        assert ((pixels == DORMANT_RGB).all(axis=2) == (c["generated"] == 0)).all()
        assert ((c["generated"] == 0) != (c["all"] == 0)).any()          # the toggle changed what is drawn
        assert "generated tokens only" in pg.page.inner_text("#heatmap-legend")
        pg.page.click("#dormant [data-tokens=all]")
        pg.settle()
        assert pg.js("moeviz.heatmapTokens") == "all"

        # analysis: the vocabulary tab has rows on a short run; the routing map has a colour key
        pg.page.click("[data-an-tab=vocabulary]")
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'vocabulary:{n}'")
        assert pg.page.locator("[data-an-panel=vocabulary] tbody tr").count() > 0
        pg.page.click("[data-an-tab=map]")
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'map:{n}'")
        keyed = pg.js("Array.from(document.querySelectorAll('[data-an-panel=map] .an-key [data-expert]'), "
                      "e => Number(e.dataset.expert))")
        top1 = trace.expert_ids[np.arange(n)[:, None], np.arange(L)[None, :],
                                np.abs(trace.weights).argmax(axis=2)]
        assert set(keyed) == set(np.unique(top1).tolist())
        pg.page.click("[data-an-tab=locality]")
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'locality:{n}'")
        ticks = pg.js("""(() => { const c = document.querySelector('[data-an-panel=locality] canvas'),
            d = devicePixelRatio, img = c.getContext('2d').getImageData(0, 18 * d, 28 * d, 60 * d).data;
            let n = 0; for (let i = 0; i < img.length; i += 4) if (img[i] > 60) n++; return n; })()""")
        assert ticks > 0, "no tick labels left of the co-activation matrix"
        assert pg.errors == []
    finally:
        pg.close()


# ---- names, permalink pages, the bad-permalink page, chat-template tokens ---------------------

def test_runs_are_named_by_their_prompts_and_permalinks_say_what_ran(server, browser):
    pg = open_page(browser, server.url + "/")
    try:
        trace, done = run_trace(pg, prompt_name="code-fibonacci", max_tokens=4, mode="all")
        assert pg.js("moeviz.source.name") == "Python: Fibonacci"
        _, done2 = run_trace(pg, text="Hello there, friend", max_tokens=3, mode="all")
        assert [r["name"] for r in pg.js("moeviz.runs.filter((r) => r.kind !== 'server' && r.kind !== 'api')")] == ["Python: Fibonacci", "“Hello there, friend”"]
        # the page's own runs come after the server's earlier runs, which the list shows too
        assert pg.js("Array.from(document.querySelectorAll('#compare-runs .cname'), e => e.textContent)")[-2:] == \
            ["Python: Fibonacci", "“Hello there, friend”"]
        pg.page.check('#compare-runs input[data-name="Python: Fibonacci"]')
        pg.page.check('#compare-runs input[data-name="“Hello there, friend”"]')
        pg.page.click("#compare-selected")
        pg.page.wait_for_function("moeviz.compare() !== null")
        assert [r["name"] for r in pg.js("moeviz.compare().runs")] == ["Python: Fibonacci", "“Hello there, friend”"]

        # the permalink page: named, with its prompt and settings, a way to generate your own, a preview
        pg.page.goto(server.url + done["permalink"])
        pg.page.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens", timeout=15_000)
        assert pg.page.inner_text("#replay-note") == "Python: Fibonacci"
        assert pg.page.inner_text("#replay-prompt") == trace.prompt
        assert "up to 4 new tokens" in pg.page.inner_text("#replay-settings")
        assert pg.js("moeviz.runs.filter((r) => r.kind !== 'server' && r.kind !== 'api')")[0]["name"] == "Python: Fibonacci"
        assert pg.js("document.getElementById('own-link').href") == server.url + "/"
        assert pg.page.title() == "Python: Fibonacci · moeviz"
        meta = pg.js("Object.fromEntries(Array.from(document.querySelectorAll('meta[property^=og]'), "
                     "m => [m.getAttribute('property'), m.content]))")
        assert meta["og:title"] == "Python: Fibonacci · moeviz"
        assert f"{trace.n_prompt} prompt + 4 generated tokens" in meta["og:description"]
        assert meta["og:image"] == f"{server.url}{done['permalink']}/preview.png"
        with urllib.request.urlopen(meta["og:image"], timeout=10) as r:
            png = r.read()
            assert r.headers["content-type"] == "image/png"
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == (1200).to_bytes(4, "big") + (630).to_bytes(4, "big")
        assert pg.js("document.querySelector('link[rel=icon]').href").endswith("/static/favicon.svg")

        # a bad permalink: an HTML page with a way back (the JSON API keeps its JSON)
        resp = pg.page.goto(server.url + "/r/AAAAAAAAAAAAAAAA")
        assert resp.status == 404 and "text/html" in resp.headers["content-type"]
        assert pg.page.inner_text("h1") == "No such run"
        pg.page.click("text=Generate your own")
        pg.page.wait_for_function("window.moeviz && moeviz.mode === 'live'")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "/api/runs/AAAAAAAAAAAAAAAA", timeout=10)
        assert e.value.code == 404 and json.loads(e.value.read()) == {"error": "no such run"}
        assert pg.errors == []
    finally:
        pg.close()


def test_chat_template_tokens_are_marked(server, browser):
    pg = open_page(browser, server.url + "/")
    try:
        pg.page.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
        pg.page.select_option("#prompt-select", "")
        pg.page.check("#as-chat")
        trace, _ = run_trace(pg, text="Hi there", max_tokens=3, mode="all")
        texts = [t["text"] for t in trace.tokens]
        assert "<|im_start|>" in texts
        marks = pg.js("Array.from(document.querySelectorAll('#tokens .tok.special'), "
                      "e => [Number(e.dataset.i), e.dataset.label, getComputedStyle(e).fontSize, "
                      "getComputedStyle(e, '::before').content])")
        want = [i for i, t in enumerate(texts) if t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")]
        assert [m[0] for m in marks] == want
        for i, label, size, before in marks:
            assert label == texts[i][2:-2] and size == "0px" and label in before
        # the text is still the model's, exactly
        assert pg.js("document.getElementById('tokens').textContent") == "".join(texts)
        pg.page.hover(f"#tokens .tok >> nth={want[0]}")
        pg.settle()
        assert "⟨im_start⟩" in pg.page.inner_text("#panel-title")
        assert pg.errors == []
    finally:
        pg.close()


def test_static_site_names_runs_by_title_and_previews(fixture_models, tmp_path, browser):
    site = tmp_path / "site"
    run_cli("export", "--out", site, "--model", fixture_models["deepseek2"], "--max-tokens", 2, check=True)
    manifest = json.loads((site / "manifest.json").read_text())
    titles = [r["title"] for r in manifest["runs"]]
    assert "Python: Fibonacci" in titles
    png = (site / "preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = (site / "index.html").read_text()
    assert 'property="og:image" content="preview.png"' in html and 'property="og:title"' in html
    with static_server(site) as url:
        pg = open_page(browser, url)
        try:
            pg.page.wait_for_function(f"moeviz.runs.length === {len(titles)}", timeout=30_000)
            assert [r["name"] for r in pg.js("moeviz.runs")] == titles
            options = pg.js("Array.from(document.querySelectorAll('#run-select option'), o => o.textContent)")
            assert [o.split(" · ")[0] for o in options] == titles
            pg.page.wait_for_function("moeviz.done", timeout=30_000)
            assert pg.page.inner_text("#replay-note") == titles[0]
            assert pg.page.is_hidden("#own-link")            # no server behind a static site
            assert pg.errors == []
        finally:
            pg.close()
