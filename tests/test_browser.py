"""The page in real headless Chromium against a real `moeviz serve` subprocess.

What the page shows is checked against the trace of the same run: the websocket
frames the page received are collected through Playwright and rebuilt into a trace
with TraceAssembler; token counts, dormant experts (per layer, overall, per token selection),
experts hit and the heatmap's pixels must all agree with a numpy recount of it.
"""
import re

import numpy as np
import pytest
from browser import DORMANT_RGB, Page, browser, pytestmark, server  # noqa: F401


def counts(trace, n=None):
    """Selections per token selection: {"prompt"|"generated"|"all": int array [n_moe_layers, n_expert]}."""
    ids = trace.expert_ids[:n]
    prompt = trace.prompt_mask[:n]
    L, E = ids.shape[1], trace.model["n_expert"]
    flat = ids + (np.arange(L) * E)[None, :, None]

    def count(sel):
        return np.bincount(flat[sel].ravel(), minlength=L * E).reshape(L, E)
    return {"prompt": count(prompt), "generated": count(~prompt), "all": count(np.ones_like(prompt))}


def check_dormant(pg, trace, n=None):
    """Page figures (window.moeviz and the dormant panel's text) against the numpy recount."""
    c = counts(trace, n)
    shown = pg.js("moeviz.dormant")
    for sel, cnt in c.items():
        per_layer = (cnt == 0).sum(axis=1)
        assert shown[sel]["perLayer"] == per_layer.tolist(), sel
        assert shown[sel]["total"] == int(per_layer.sum()), sel
        pg.page.click(f"[data-tokens={sel}]")
        pg.settle()
        assert pg.page.inner_text("#dormant-count") == str(per_layer.sum())
        # one decimal, as shown (JS and Python round a trailing 5 differently: compare the value)
        pct = pg.page.inner_text("#dormant-pct")
        assert pct.endswith("%") and abs(float(pct[:-1]) - 100 * per_layer.sum() / cnt.size) <= 0.05 + 1e-9
        rows = pg.js("Array.from(document.querySelectorAll('#dormant-layers .drow[data-layer]'), "
                     "r => [Number(r.dataset.layer), Number(r.dataset.dormant)])")
        assert rows == [[layer, int(d)] for layer, d in zip(trace.model["moe_layers"], per_layer)]
    hit = int((c["all"] > 0).sum())
    assert pg.js("moeviz.expertsHit") == hit
    assert pg.page.inner_text("#stat-hit") == f"{hit} / {c['all'].size}"
    return c


@pytest.mark.smoke     # the fast tier's one page in Chromium (tests/conftest.py)
def test_live_run_matches_its_trace(server, browser):
    pg = Page(browser, server.url + "/")
    try:
        # A custom prompt full of markup: token text must arrive as text, never as HTML.
        hostile = 'Hi <b>bold</b> & <img src=x onerror="window.__xss=1">'
        trace, done = pg.generate(text=hostile, max_tokens=6, seed=1)
        assert pg.sent[-1] == {"type": "generate", "text": hostile, "max_tokens": 6, "temperature": 0, "seed": 1,
                               "probs": False}
        n, n_prompt = trace.n_tokens, trace.n_prompt
        assert n == done["finish"]["n_prompt"] + done["finish"]["n_generated"] and n_prompt > 0

        # token stream: every token, prompt ones styled apart, text exactly the trace's
        assert pg.js("moeviz.tokens") == n and pg.js("moeviz.promptTokens") == n_prompt
        assert pg.page.locator("#tokens .tok").count() == n
        assert pg.page.locator("#tokens .tok.prompt").count() == n_prompt
        assert pg.js("document.getElementById('tokens').textContent") == "".join(t["text"] for t in trace.tokens)
        assert "<b>bold</b>" in pg.js("document.getElementById('tokens').textContent")
        assert pg.js("document.querySelectorAll('#tokens *:not(.tok)').length") == 0
        assert pg.js("window.__xss") is None
        assert pg.page.inner_text("#stat-token").split() == [str(n), "/", str(n)]

        # header from the model
        assert pg.page.inner_text("#stat-total") != "–" and pg.page.inner_text("#stat-active") != "–"

        c = check_dormant(pg, trace)

        # heatmap: a cell is drawn in the dormant colour exactly when the trace never selected it
        L, E = c["all"].shape
        pixels = np.array(pg.cell_pixels("heatmap", L, E)).reshape(L, E, 3)
        is_dormant = (pixels == DORMANT_RGB).all(axis=2)
        assert (is_dormant == (c["all"] == 0)).all()
        assert (~is_dormant).sum() == (c["all"] > 0).sum() > 0          # not empty
        # more selections never draw darker (log colour scale, same palette ramp)
        hot, cold = np.unravel_index(c["all"].argmax(), c["all"].shape), np.argwhere(c["all"] == 1)
        if len(cold):
            assert pixels[hot].sum() > pixels[tuple(cold[0])].sum()
        # the dense layer 0 is a labelled band, not dormant cells
        assert trace.model["dense_layers"] == [0]
        assert pg.page.locator("#dormant-layers .drow.dense").inner_text().startswith("L0")
        assert pg.errors == []
    finally:
        pg.close()


def test_probabilities_playback_and_permalink(server, browser):
    pg = Page(browser, server.url + "/")
    try:
        trace, done = pg.generate(prompt_name="story-lighthouse", max_tokens=8, probs=True, mode="all")
        assert pg.sent[-1]["probs"] is True and pg.sent[-1]["prompt_name"] == "story-lighthouse"
        assert trace.probs is not None and pg.js("moeviz.hasProbs")
        n, n_prompt = trace.n_tokens, trace.n_prompt
        check_dormant(pg, trace)

        # panel shows the newest token: selected cells bright, others faint by probability
        assert pg.js("moeviz.panelToken") == n - 1
        L, E = trace.expert_ids.shape[1], trace.model["n_expert"]
        pixels = np.array(pg.cell_pixels("panel", L, E)).reshape(L, E, 3)
        selected = np.zeros((L, E), bool)
        for layer in range(L):
            selected[layer, trace.expert_ids[n - 1, layer]] = True
        brightness = pixels.sum(axis=2)
        assert brightness[selected].min() > brightness[~selected].max()
        probs = trace.probs[n - 1]
        faint = ~selected & (probs > 0.05 * probs.max(axis=1, keepdims=True))
        assert faint.any() and (brightness[faint] > sum(DORMANT_RGB)).all()

        # playback: scrub back to the end of prefill; figures follow the cursor exactly
        pg.page.fill("#pb-scrub", str(n_prompt))
        pg.settle()
        assert pg.js("moeviz.applied") == n_prompt and not pg.js("moeviz.playing")
        assert pg.page.inner_text("#pb-pos") == f"{n_prompt} / {n}"
        c = check_dormant(pg, trace, n_prompt)
        assert (c["generated"] == 0).all()          # no generated token yet: every expert dormant for those
        # "all at once" steps whole batches: back over the prompt batch, then forward again
        pg.page.click("#pb-back")
        pg.settle()
        assert pg.js("moeviz.applied") == 0 and pg.js("moeviz.dormant.all.total") == L * E
        pg.page.click("#pb-fwd")
        pg.settle()
        assert pg.js("moeviz.applied") == n_prompt
        # single-token mode steps one token
        pg.page.click("[data-mode=single]")
        pg.page.click("#pb-fwd")
        pg.settle()
        assert pg.js("moeviz.applied") == n_prompt + 1
        check_dormant(pg, trace, n_prompt + 1)
        pg.page.click("[data-mode=all]")
        pg.page.click("#pb-play")
        pg.page.wait_for_function(f"moeviz.applied === {n} && !moeviz.playing")
        check_dormant(pg, trace)

        # hovering a token shows its routing; clicking pins it
        pg.page.hover("#tokens .tok >> nth=2")
        pg.settle()
        assert pg.js("moeviz.panelToken") == 2
        pg.page.click("#tokens .tok >> nth=3")
        pg.page.mouse.move(5, 5)
        pg.settle()
        assert pg.js("moeviz.panelToken") == 3
        assert re.match(r"#3 .* pinned", pg.page.inner_text("#panel-title"))

        # the run's permalink replays the same trace through the same views
        link = done["permalink"]
        assert pg.page.get_attribute("#permalink", "href") == link
        pg.page.goto(server.url + link)
        pg.page.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens", timeout=15_000)
        assert pg.js("moeviz.mode") == "replay" and pg.js("moeviz.tokens") == n
        assert pg.js("moeviz.tokenTexts()") == [t["text"] for t in trace.tokens]
        check_dormant(pg, trace)
        assert pg.errors == []
    finally:
        pg.close()


def test_stop_cancels_and_keeps_what_arrived(server, browser):
    pg = Page(browser, server.url + "/")
    try:
        trace, done = pg.generate(prompt_name="code-fibonacci", max_tokens=400, temperature=0.8, seed=7,
                                  mode="all", stop_after=2)
        assert pg.sent[-1] == {"type": "cancel"}
        assert done["finish"]["reason"] == "cancelled" and pg.js("moeviz.status") == "cancelled"
        assert 2 < done["finish"]["n_generated"] < 400 and pg.js("moeviz.tokens") == trace.n_tokens
        check_dormant(pg, trace)
        assert pg.page.is_enabled("#generate") and not pg.page.is_enabled("#stop")
        assert pg.errors == []
    finally:
        pg.close()
