"""The analysis panels (web/js/analysis/) in real Chromium, against moeviz.analysis.

Traces are recorded with the real CLI, exported as static sites and served by a
plain `python -m http.server`; the page's figures (window.moeviz.analysis(), the
numbers the panels draw) must equal moeviz.analysis computed here on the same
tokens: the whole run, a phase (--tokens), and the tokens applied at a cursor.
"""
import math
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from browser import Page, browser, pytestmark  # noqa: F401
from conftest import run_cli
from serverproc import static_server
from write_golden import expected_figures as expected  # the same figures the node goldens hold

from moeviz import analysis as A
from moeviz.trace import load

ROOT = Path(__file__).resolve().parents[1]
REL, ABS = 1e-6, 1e-9
# Simulated baselines (shuffles, uniform draws) use the page's own seeded generator:
# they agree with numpy's up to sampling noise only.
NOISY = 0.2

RUNS = {  # name: (arch, prompt, max tokens, probs)
    "ds-probs": ("deepseek2", "the cat sat on the mat. " * 6, 40, True),
    "ds-plain": ("deepseek2", "Once upon a time there was", 10, False),
    "llama-probs": ("llama", "a b c a b c a b c " * 4 + "def f(x): return x", 40, True),
}


@pytest.fixture(scope="module")
def sites(fixture_models, tmp_path_factory):
    """Two static sites (deepseek2 runs, llama run) under one static file server."""
    tmp = tmp_path_factory.mktemp("analysis")
    traces = {}
    for name, (arch, prompt, max_tokens, probs) in RUNS.items():
        path = tmp / f"{name}.json"
        run_cli("record", "-m", fixture_models[arch], "--prompt", prompt, "-o", path, "--max-tokens", max_tokens,
                "--temperature", 0, *(["--probs"] if probs else []), check=True)
        traces[name] = path
    root = tmp / "www"
    run_cli("export", "--out", root / "ds", traces["ds-probs"], traces["ds-plain"], check=True)
    run_cli("export", "--out", root / "llama", traces["llama-probs"], check=True)
    with static_server(root) as url:
        yield url, {name: load(p) for name, p in traces.items()}


# ---- helpers -------------------------------------------------------------------------

def routing_at(trace, applied=None, tokens="all"):
    """moeviz.analysis's Routing of the first `applied` tokens, then the --tokens selection."""
    n = trace.n_tokens if applied is None else applied
    cut = types.SimpleNamespace(
        model=trace.model, n_tokens=n, prompt_mask=trace.prompt_mask[:n], tokens=trace.tokens[:n],
        expert_ids=trace.expert_ids[:n], weights=trace.weights[:n],
        probs=None if trace.probs is None else trace.probs[:n])
    return A.select_tokens(cut, tokens, name="trace")


def assert_close(page, py, path="figures", skip=()):
    """Page JSON against moeviz.analysis's (to_json'd) on every key Python has."""
    if isinstance(py, dict):
        assert isinstance(page, dict), f"{path}: {page!r} is not an object"
        for k, v in py.items():
            if k in skip or k == "moe_layers":
                continue
            assert k in page, f"{path}.{k} missing from the page's figures"
            assert_close(page[k], v, f"{path}.{k}", skip)
    elif isinstance(py, list):
        assert isinstance(page, list) and len(page) == len(py), f"{path}: length {len(page or [])} != {len(py)}"
        for i, (a, b) in enumerate(zip(page, py)):
            assert_close(a, b, f"{path}[{i}]", skip)
    elif isinstance(py, bool) or py is None or isinstance(py, str):
        assert page == py, f"{path}: page {page!r} != python {py!r}"
    else:
        assert isinstance(page, (int, float)) and not isinstance(page, bool), f"{path}: {page!r} is not a number"
        assert math.isclose(page, py, rel_tol=REL, abs_tol=ABS), f"{path}: page {page!r} != python {py!r}"


def assert_near(page, py, path, tol=NOISY):
    for i, (a, b) in enumerate(zip(page, py)):
        assert (a is None) == (b is None) and (a is None or abs(a - b) <= tol), f"{path}[{i}]: page {a} vs python {b}"


def check_figures(fig, r, layer, expert, min_count):
    """The page's figures (all groups) against moeviz.analysis on routing `r`."""
    want = expected(r, layer, expert, min_count)
    assert fig["tokens"] == r.n_tokens and fig["layers"] == r.moe_layers
    assert fig["layer"] == layer and fig["expert"] == expert
    for key in ("utilization", "balance", "dormant", "saturation", "profile", "routing_map", "locality",
                "coactivation", "transitions", "confidence", "cache"):
        assert_close(fig[key], want[key], key)
    shuffled = ("mutual_information_shuffled", "predictability_shuffled")
    assert_close(fig["transition_summary"], want["transition_summary"], "transition_summary", skip=shuffled)
    for key in shuffled:
        assert_near(fig["transition_summary"][key], want["transition_summary"][key], key, tol=0.35)
    sp, spw = fig["specialization"], want["specialization"]
    assert_close(sp, spw, "specialization", skip=("shuffled_baseline", "uniform_baseline"))
    assert_near(sp["shuffled_baseline"], spw["shuffled_baseline"], "shuffled_baseline")
    assert_near([sp["uniform_baseline"]], [spw["uniform_baseline"]], "uniform_baseline")
    return want


def open_run(browser, url, run=None, fragment=""):
    pg = Page(browser, url + fragment)
    if run is not None:
        pg.page.wait_for_function("document.querySelectorAll('#run-select option').length > 1")
        pg.page.select_option("#run-select", f"runs/{run}.moetrace")
    return pg


def wait_played(pg, n):
    pg.page.wait_for_function(f"moeviz.done && moeviz.tokens === {n} && moeviz.applied === {n}", timeout=30_000)
    pg.settle()


def analysis(pg, **opts):
    return pg.page.evaluate("(o) => moeviz.analysis(o)", opts)


def busiest(r, layer):
    return int(A.tally(r).counts[r.layer_index(layer)].argmax())


# ---- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("site,run", [("ds", "ds-probs"), ("llama", "llama-probs")])
def test_figures_equal_moeviz_analysis(sites, browser, site, run):
    url, traces = sites
    trace = traces[run]
    pg = open_run(browser, url + f"{site}/", run if site == "ds" else None)
    try:
        wait_played(pg, trace.n_tokens)
        assert trace.probs is not None and pg.js("moeviz.hasProbs")
        layers = trace.model["moe_layers"]
        if site == "ds":   # a dense layer 0 and shared experts: only the routed MoE layers 1-3 are analysed
            assert trace.model["dense_layers"] == [0] and trace.model["n_shared_experts"] > 0 and layers == [1, 2, 3]
            assert analysis(pg, layer=0)["error"].startswith("layer 0 is not a MoE layer")
        for tokens in ("generated", "prompt", "all"):
            r = routing_at(trace, tokens=tokens)
            for layer in (layers[-1], layers[0]):
                expert = busiest(r, layer)
                fig = analysis(pg, tokens=tokens, layer=layer, expert=expert, minCount=3)
                assert fig["selection"] == tokens and fig["applied"] == trace.n_tokens
                want = check_figures(fig, r, layer, expert, 3)
        # the checks are not vacuous (the last ones: all tokens, the first MoE layer)
        assert want["specialization"]["tokens"] > 0 and want["profile"]["top"] and want["transitions"]
        assert want["locality"]["pairs"] == trace.n_tokens - 1 and fig["confidence"]["top1"]["mean"][0] > 0
        assert fig["cache"]["static_overall"][-1] == 1.0 and 0 < fig["cache"]["compulsory_miss"] < 1
        # a dormant expert's profile says so
        r = routing_at(trace)
        dormant = [(layer, e) for layer, ids in zip(layers, A.dormant_experts(r)["per_layer"]) for e in ids]
        if dormant:
            layer, e = dormant[0]
            prof = analysis(pg, layer=layer, expert=e, groups=["profile"])["profile"]
            assert_close(prof, A.to_json(A.expert_token_profile(r, layer, e)), "profile")
            assert prof["tokens_routed"] == 0 and prof["note"].startswith("dormant")
        assert pg.errors == []
    finally:
        pg.close()


def test_figures_cover_exactly_the_applied_tokens(sites, browser):
    url, traces = sites
    trace = traces["ds-probs"]          # the site's first run: the one a #t= link opens
    n = trace.n_prompt + 5
    pg = open_run(browser, url + "ds/", fragment=f"#t={n}")
    try:
        pg.page.wait_for_function(f"moeviz.done && moeviz.applied === {n + 1}", timeout=30_000)
        pg.settle()
        layer = 2
        for tokens in ("all", "generated"):
            r = routing_at(trace, n + 1, tokens)
            fig = analysis(pg, tokens=tokens, layer=layer, expert=busiest(r, layer), minCount=2)
            assert fig["applied"] == n + 1 and fig["tokens"] == (n + 1 if tokens == "all" else 6)
            check_figures(fig, r, layer, busiest(r, layer), 2)
        # the whole run differs from the cursor's figures (so the check above means something)
        full = A.to_json(A.cache_hit_rates(routing_at(trace)))
        assert full["stack_distance_histogram"] != fig["cache"]["stack_distance_histogram"] or \
            A.to_json(A.tally(routing_at(trace)).counts) != analysis(pg)["utilization"]["counts"]
        # step back with the playback control: one token fewer
        pg.page.click("#pb-back")
        pg.page.wait_for_function(f"moeviz.applied === {n}")
        r = routing_at(trace, n)
        fig = analysis(pg, layer=layer, expert=busiest(r, layer), minCount=2)
        assert fig["tokens"] == n
        check_figures(fig, r, layer, busiest(r, layer), 2)
        # the visible panel follows the cursor (recomputed, not just the API)
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'balance:{n}'")
        assert f"cursor {n} of {trace.n_tokens}" in pg.page.inner_text("#analysis .an-status")
        # the prompt-only selection at a cursor inside the prompt
        pg.page.click("#pb-start")
        pg.page.wait_for_function("moeviz.applied === 0")
        assert analysis(pg)["tokens"] == 0 and "no tokens yet" in analysis(pg)["note"]
        for _ in range(3):
            pg.page.click("#pb-fwd")
        pg.page.wait_for_function("moeviz.applied === 3")
        r = routing_at(trace, 3, "prompt")
        fig = analysis(pg, tokens="prompt", layer=1, expert=busiest(r, 1), minCount=1)
        check_figures(fig, r, 1, busiest(r, 1), 1)
        assert analysis(pg, tokens="generated")["tokens"] == 0
        # forward to the end: the kept per-token results (LRU stacks, router scores) are
        # extended, not reused stale
        pg.page.click("#pb-end")
        pg.page.wait_for_function(f"moeviz.applied === {trace.n_tokens}")
        r = routing_at(trace)
        check_figures(analysis(pg, layer=3, expert=busiest(r, 3), minCount=3), r, 3, busiest(r, 3), 3)
        assert pg.errors == []
    finally:
        pg.close()


def test_without_probabilities_confidence_is_not_captured(sites, browser):
    url, traces = sites
    trace = traces["ds-plain"]
    assert trace.probs is None
    pg = open_run(browser, url + "ds/", "ds-plain")
    try:
        wait_played(pg, trace.n_tokens)
        assert not pg.js("moeviz.hasProbs")
        fig = analysis(pg)
        assert fig["confidence"] is None and "no router probabilities" in fig["confidence_note"]
        check_figures(fig, routing_at(trace), fig["layer"], fig["expert"], 10)
        pg.page.click("[data-an-tab=confidence]")
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'confidence:{trace.n_tokens}'")
        panel = pg.page.locator("[data-an-panel=confidence]")
        assert panel.is_visible() and "not captured" in panel.inner_text()
        assert panel.locator("table").count() == 0 and not any(ch.isdigit() for ch in panel.inner_text())
        assert pg.errors == []
    finally:
        pg.close()


def test_heatmap_click_chooses_the_expert_profile(sites, browser):
    url, traces = sites
    trace = traces["llama-probs"]
    pg = open_run(browser, url + "llama/")
    try:
        wait_played(pg, trace.n_tokens)
        r = routing_at(trace)
        layer = trace.model["moe_layers"][2]
        row, expert = 2, int(np.argsort(A.tally(r).counts[2])[-2])     # the second busiest expert there
        pg.js("document.getElementById('heatmap-canvas').scrollIntoView()")
        box = pg.js("(() => { const r = document.getElementById('heatmap-canvas').getBoundingClientRect(); "
                    "return [r.left, r.top, window.devicePixelRatio]; })()")
        c = pg.page.evaluate("([r, e]) => moeviz.cellCenter('heatmap', r, e)", [row, expert])
        pg.page.mouse.click(box[0] + c["x"] / box[2], box[1] + c["y"] / box[2])
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'profile:{trace.n_tokens}'")
        fig = analysis(pg)
        assert (fig["panel"]["tab"], fig["panel"]["layer"], fig["panel"]["expert"]) == ("profile", layer, expert)
        want = A.to_json(A.expert_token_profile(r, layer, expert))
        assert_close(fig["profile"], want, "profile")
        # what the panel shows: its title and one table row per listed token, counts as Python's
        title = pg.page.locator("[data-an-panel=profile] .an-line[data-layer]")
        assert title.get_attribute("data-layer") == str(layer) and title.get_attribute("data-expert") == str(expert)
        assert f"routed {want['tokens_routed']} of {trace.n_tokens}" in title.inner_text()
        rows = pg.js("Array.from(document.querySelectorAll('[data-an-panel=profile] tbody tr'), "
                     "tr => Array.from(tr.cells, c => c.textContent))")
        assert [[int(x[1]), int(x[2])] for x in rows] == [[t["count"], t["occurrences"]] for t in want["top"]]
        assert pg.page.locator(".an-layer").input_value() == "2" and pg.page.locator(".an-expert").input_value() == str(expert)
        # the selects choose too
        pg.page.select_option(".an-expert", str((expert + 1) % 8))
        pg.page.wait_for_function(f"moeviz.analysis({{groups: []}}).panel.expert === {(expert + 1) % 8}")
        assert pg.errors == []
    finally:
        pg.close()


def test_every_tab_draws_the_figures(sites, browser):
    url, traces = sites
    trace = traces["ds-probs"]
    pg = open_run(browser, url + "ds/")
    try:
        wait_played(pg, trace.n_tokens)
        n = trace.n_tokens
        for tab in ("balance", "saturation", "profile", "map", "locality", "vocabulary", "confidence", "cache"):
            pg.page.click(f"[data-an-tab={tab}]")
            pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === '{tab}:{n}'")
            panel = pg.page.locator(f"[data-an-panel={tab}]")
            assert panel.is_visible() and panel.inner_text().strip()
            assert pg.page.locator("[data-an-panel]:visible").count() == 1
            canvases = pg.js(f"Array.from(document.querySelectorAll('[data-an-panel={tab}] canvas'), c => c.width * c.height)")
            assert all(a > 0 for a in canvases)
        # numbers in the tables are Python's, rounded as shown: generated tokens only
        pg.page.click("[data-an-tokens=generated]")
        pg.page.click("[data-an-tab=balance]")
        n_gen = n - trace.n_prompt
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'balance:{n_gen}'")
        assert f"over {n_gen} generated tokens" in pg.page.inner_text("#analysis .an-status")
        b = A.load_balance(routing_at(trace, tokens="generated"))
        rows = pg.js("Array.from(document.querySelectorAll('[data-an-panel=balance] tbody tr'), "
                     "tr => [Number(tr.dataset.layer), ...Array.from(tr.cells, c => c.textContent)])")
        assert [x[0] for x in rows] == trace.model["moe_layers"]
        for i, x in enumerate(rows):
            cv, cv_random = (float(v) for v in x[2].replace("(", "").replace(")", "").split())
            assert abs(cv - b["cv"][i]) <= 0.005 + 1e-9 and abs(cv_random - b["cv_random"][i]) <= 0.005 + 1e-9
            assert abs(float(x[7].rstrip("%")) - 100 * b["top_share"][i]) <= 0.05 + 1e-9
        # a row click chooses the layer
        pg.page.click("[data-an-panel=balance] tbody tr[data-layer='3']")
        pg.page.wait_for_function("moeviz.analysis({groups: []}).panel.layer === 3")
        # the cache table at C = k, 2k, 4k
        pg.page.click("[data-an-tab=cache]")
        pg.page.click("[data-cache-scope=all]")
        pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === 'cache:{n_gen}'")
        c = A.cache_hit_rates(routing_at(trace, tokens="generated"))
        # the C = k, 2k, 4k table (the policies' table, web/js/analysis/policies.js, is beside it)
        cells = pg.js("Array.from(document.querySelectorAll('[data-an-panel=cache] .an-scroll:not(.an-policies) tbody tr'), "
                      "tr => Array.from(tr.cells, c => c.textContent))")
        head = pg.js("Array.from(document.querySelectorAll('[data-an-panel=cache] .an-scroll:not(.an-policies) thead th'), "
                     "c => c.textContent)")
        for j, cap in enumerate(head[1:], start=1):
            assert abs(float(cells[0][j].rstrip("%")) - 100 * c["lru_overall"][int(cap) - 1]) <= 0.05 + 1e-9
            assert abs(float(cells[1][j].rstrip("%")) - 100 * c["static_overall"][int(cap) - 1]) <= 0.05 + 1e-9
        assert pg.errors == []
    finally:
        pg.close()


def test_big_run_figures_and_throttle(tmp_path, browser):
    """2,000 tokens x 48 MoE layers x top-8 of 128 (bench/analysis_speed.py's synthetic
    routing): the figures equal Python's; while playing, the visible panel recomputes at
    most 4 times a second. (How long a recompute takes is bench/panel_time.py's job.)"""
    sys.path.insert(0, str(ROOT / "bench"))
    from analysis_speed import synthetic_trace  # noqa: PLC0415
    from moeviz.trace import save

    trace = synthetic_trace(2000, 48, 128, 8)
    save(trace.validate(), tmp_path / "big.json")
    run_cli("export", "--out", tmp_path / "site", tmp_path / "big.json", check=True)
    with static_server(tmp_path / "site") as url:
        pg = Page(browser, url)
        try:
            pg.page.wait_for_function("moeviz.done && moeviz.tokens === 2000", timeout=60_000)
            pg.page.click("#pb-end")
            pg.page.wait_for_function("moeviz.applied === 2000")
            r = routing_at(trace)
            fig = analysis(pg, layer=5, expert=3, minCount=10, groups=["balance", "cache"])
            assert_close(fig["balance"], A.to_json(A.load_balance(r)), "balance")
            assert_close(fig["cache"]["lru_overall"], A.to_json(A.cache_hit_rates(r)["lru_overall"]), "lru")

            # playing from the start: the visible tab follows the cursor, throttled
            pg.page.click("[data-an-tab=locality]")
            pg.page.click("#pb-start")
            pg.page.click("[data-mode=sequence]")
            count = "[moeviz.analysis({groups: []}).panel.computes, performance.now(), moeviz.applied]"
            before = pg.js(count)
            pg.page.click("#pb-play")
            time.sleep(2.0)
            pg.page.click("#pb-play")          # pause
            after = pg.js(count)
            computes, seconds, moved = after[0] - before[0], (after[1] - before[1]) / 1000, after[2] - before[2]
            print(f"{computes} recomputes in {seconds:.2f} s while the cursor moved {moved} tokens")
            assert moved > 4 * seconds + 10, moved       # the cursor moved more often than 4 times a second
            assert 2 <= computes <= 4 * seconds + 1, (computes, seconds)
            assert pg.errors == []
        finally:
            pg.close()


def test_live_runs_figures_follow_each_run(fixture_models, tmp_path, browser):
    """Live: two runs one after the other; the second one's figures (with probabilities)
    are its own, not mixed with the first's (the kept per-run results are dropped)."""
    from serverproc import ServerProcess  # noqa: PLC0415

    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "1024", "--data-dir", tmp_path / "runs") as s:
        pg = Page(browser, s.url + "/")
        try:
            pg.page.click("[data-an-tab=cache]")        # a tab with per-run kept results, visible while streaming
            first, _ = pg.generate(text="Hello there, friend", max_tokens=8, seed=1)
            r = routing_at(first)
            check_figures(analysis(pg, layer=2, expert=busiest(r, 2), minCount=2), r, 2, busiest(r, 2), 2)
            assert analysis(pg)["confidence"] is None
            pg.page.click("[data-an-tab=confidence]")
            second, _ = pg.generate(text="the cat sat on the mat. the cat sat on the mat.", max_tokens=12, probs=True)
            assert second.probs is not None
            r = routing_at(second)
            fig = analysis(pg, layer=3, expert=busiest(r, 3), minCount=2)
            check_figures(fig, r, 3, busiest(r, 3), 2)
            assert fig["confidence"] is not None
            pg.page.wait_for_function(f"document.getElementById('analysis').dataset.shown === "
                                      f"'confidence:{second.n_tokens}'")
            assert "not captured" not in pg.page.inner_text("[data-an-panel=confidence]")
            assert pg.errors == []
        finally:
            pg.close()
