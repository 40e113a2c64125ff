"""Comparing runs in the page, in real Chromium: per-layer used-expert sets, their
Jaccard overlap, experts dormant in all runs, the delta heatmap; a static site's
"compare all runs"; a live run against an opened file; traces of another model
refused. Every figure is recomputed here with numpy from the trace files, with the
definitions of moeviz/analysis/compare.py."""
import itertools
import json

import numpy as np
import pytest
from browser import DORMANT_RGB, Page, browser, pytestmark  # noqa: F401
from conftest import run_cli
from serverproc import ServerProcess, static_server
from test_browser import check_dormant
from test_browser_files import READY, download, pick_file, png_size, record, wait_shown

from moeviz.analysis import compare_routings
from moeviz.analysis.routing import select_tokens
from moeviz.trace import load

PROMPTS = {
    "code": "def fib(n):\n    if n < 2:\n        return n",
    "story": "The lighthouse keeper climbed the stairs every night",
    "math": "12 + 7 = 19, 3 * 4 = 12, 100 - 1 =",
}


def selection_counts(trace):
    L, E = trace.expert_ids.shape[1], trace.model["n_expert"]
    flat = trace.expert_ids + (np.arange(L) * E)[None, :, None]
    return np.bincount(flat.ravel(), minlength=L * E).reshape(L, E)


def jaccard(a, b):
    """Per MoE layer, |A ∩ B| / |A ∪ B| of the used-expert sets; nan for 0/0."""
    ua, ub = selection_counts(a) > 0, selection_counts(b) > 0
    inter, union = (ua & ub).sum(axis=1), (ua | ub).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def dormant_in_all(traces):
    return ~np.any([selection_counts(t) > 0 for t in traces], axis=0)      # [L, E]


def as_float(v):
    return np.nan if v is None else v


def check_table(pg, traces, per_layer_jaccard):
    """The compare card's per-layer rows and its totals against the numpy figures."""
    never = dormant_in_all(traces)
    layers = traces[0].model["moe_layers"]
    rows = pg.js("""Array.from(document.querySelectorAll('#compare-table tbody tr[data-layer]'), (tr) => ({
        layer: Number(tr.dataset.layer), jaccard: tr.querySelector('td.jaccard').textContent,
        dormant: tr.querySelector('td.dormant-all').textContent,
        used: Array.from(tr.querySelectorAll('td.used'), (td) => td.textContent)}))""")
    assert [r["layer"] for r in rows] == layers
    E = traces[0].model["n_expert"]
    for li, r in enumerate(rows):
        # shown with 3 decimals (JS and Python round a trailing 5 differently: compare the value)
        assert abs(float(r["jaccard"]) - per_layer_jaccard[li]) <= 0.0005 + 1e-9, (li, r)
        assert int(r["dormant"]) == never[li].sum()
        assert r["used"] == [f"{(selection_counts(t)[li] > 0).sum()}/{E}" for t in traces]
    total = pg.page.inner_text("#compare-table tfoot tr").split()
    assert total[-1] == str(never.sum())
    text = pg.page.inner_text("#compare-dormant-all")
    assert f"dormant in all: {never.sum()} of {never.size}" in text


def check_figures(fig, traces):
    """window.moeviz.compare() against numpy and against moeviz.analysis.compare_routings."""
    assert fig["error"] is None
    assert [r["tokens"] for r in fig["runs"]] == [t.n_tokens for t in traces]
    never = dormant_in_all(traces)
    assert fig["dormantInAll"]["perLayer"] == never.sum(axis=1).tolist()
    assert fig["dormantInAll"]["total"] == never.sum()
    assert fig["dormantInAll"]["experts"] == [np.flatnonzero(row).tolist() for row in never]
    for run, t in zip(fig["runs"], traces):
        d = (selection_counts(t) == 0)
        assert run["dormantPerLayer"] == d.sum(axis=1).tolist() and run["dormant"] == d.sum()
        assert abs(run["dormantFraction"] - d.mean()) < 1e-12
    pairs = list(itertools.combinations(range(len(traces)), 2))
    assert [p["runs"] for p in fig["pairs"]] == [list(p) for p in pairs]
    for p, (a, b) in zip(fig["pairs"], pairs):
        np.testing.assert_allclose([as_float(j) for j in p["jaccard"]], jaccard(traces[a], traces[b]), atol=1e-12)
    ref = compare_routings([select_tokens(t, "all", str(i)) for i, t in enumerate(traces)])
    assert ref["dormant_in_all_total"] == fig["dormantInAll"]["total"]
    for p, q in zip(fig["pairs"], ref["pairs"]):
        np.testing.assert_allclose([as_float(j) for j in p["jaccard"]], q["jaccard"], atol=1e-12)


@pytest.fixture(scope="module")
def traces(fixture_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traces")
    paths = {name: record(fixture_models["deepseek2"], tmp / f"{name}.json", prompt, max_tokens=6)
             for name, prompt in PROMPTS.items()}
    paths["qwen"] = record(fixture_models["qwen2moe"], tmp / "qwen.moetrace", "Hello there", max_tokens=6)
    return paths


@pytest.fixture(scope="module")
def site(traces, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "out"
    run_cli("export", "--out", out, *(traces[n] for n in PROMPTS), check=True)
    with static_server(out) as url:
        yield url


def open_site(browser, url):
    pg = Page(browser, url)
    pg.page.wait_for_function(READY, timeout=30_000)
    pg.page.wait_for_function("moeviz.runs.length === 3")
    return pg


def run_compare(pg, button="#compare-selected"):
    pg.page.click(button)
    pg.page.wait_for_function("moeviz.compare() !== null")
    pg.settle()
    return pg.js("moeviz.compare()")


def test_compare_two_site_runs(site, browser, traces):
    pg = open_site(browser, site)
    try:
        a, b = load(traces["code"]), load(traces["story"])
        assert pg.page.is_disabled("#compare-selected")
        pg.page.check("#compare-runs input[data-name=code]")
        pg.page.check("#compare-runs input[data-name=story]")
        fig = run_compare(pg)
        check_figures(fig, [a, b])
        expected = jaccard(a, b)
        np.testing.assert_allclose([as_float(j) for j in fig["jaccard"]], expected, atol=1e-12)
        assert 0 < np.nanmin(expected) and np.nanmax(expected) < 1 + 1e-12      # a real overlap, not trivial
        check_table(pg, [a, b], expected)
        assert pg.page.is_hidden("#compare-matrix-wrap")                       # two runs: one pair, no matrix
        # each run's dormant share, as shown
        chips = pg.js("Array.from(document.querySelectorAll('#compare-summary .chip b'), (b) => b.textContent)")
        assert [float(c[:-1]) for c in chips] == pytest.approx(
            [100 * (selection_counts(t) == 0).mean() for t in (a, b)], abs=0.05 + 1e-9)
        assert pg.errors == []
    finally:
        pg.close()


def test_compare_all_site_runs_and_the_delta_heatmap(site, browser, traces):
    pg = open_site(browser, site)
    try:
        ts = [load(traces[n]) for n in PROMPTS]
        assert pg.page.inner_text("#compare-all") == "Compare all 3 runs"
        fig = run_compare(pg, "#compare-all")
        assert [r["name"] for r in fig["runs"]] == list(PROMPTS)
        check_figures(fig, ts)
        # more than two runs: per layer the mean over pairs, and a run x run matrix of the pairs' means
        per_pair = np.array([jaccard(ts[a], ts[b]) for a, b in itertools.combinations(range(3), 2)])
        np.testing.assert_allclose(fig["jaccard"], np.nanmean(per_pair, axis=0), atol=1e-12)
        check_table(pg, ts, np.nanmean(per_pair, axis=0))
        assert pg.page.is_visible("#compare-matrix-wrap")
        matrix = pg.js("Array.from(document.querySelectorAll('#compare-matrix tbody tr'), "
                       "(tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent))")
        for a, b in itertools.product(range(3), range(3)):
            want = 1.0 if a == b else np.nanmean(jaccard(ts[a], ts[b]))
            assert abs(float(matrix[a][1 + b]) - want) <= 0.0005 + 1e-9
            assert abs(fig["matrix"][a][b] - want) < 1e-12

        # delta heatmap, A = code, B = story by default; then B = math
        for b_index in (1, 2):
            if b_index == 2:
                pg.page.select_option("#delta-b", "2")
                pg.page.wait_for_function("moeviz.compare().delta.b === 'math'")
                pg.settle()
            fig = pg.js("moeviz.compare()")
            A, B = ts[0], ts[b_index]
            want = selection_counts(A) / A.n_tokens - selection_counts(B) / B.n_tokens
            assert fig["delta"]["a"] == "code" and fig["delta"]["b"] == list(PROMPTS)[b_index]
            np.testing.assert_allclose(fig["delta"]["values"], want, atol=1e-12)
            assert abs(fig["delta"]["max"] - np.abs(want).max()) < 1e-12
            # diverging colours: orange where A selects more, blue where B does, the dormant colour where neither does
            L, E = want.shape
            px = np.array(pg.js(f"""(() => {{
                const c = document.getElementById('delta-canvas').getContext('2d'), out = [];
                for (let l = 0; l < {L}; l++) for (let e = 0; e < {E}; e++) {{
                    const p = moeviz.cellCenter('delta', l, e);
                    out.push(Array.from(c.getImageData(p.x, p.y, 1, 1).data.slice(0, 3)));
                }}
                return out; }})()""")).reshape(L, E, 3).astype(int)
            neither = (selection_counts(A) == 0) & (selection_counts(B) == 0)
            assert ((px == DORMANT_RGB).all(axis=2) == neither).all()
            strong = np.abs(want) >= 0.25 * np.abs(want).max()
            assert (strong & (want > 0)).any() and (strong & (want < 0)).any()
            assert (px[strong & (want > 0), 0] > px[strong & (want > 0), 2]).all()
            assert (px[strong & (want < 0), 2] > px[strong & (want < 0), 0]).all()

        name, data = download(pg, "#delta-png")
        assert name == "moeviz-delta-code-vs-math.png"
        assert png_size(data) == tuple(pg.js("[document.getElementById('delta-canvas').width, "
                                             "document.getElementById('delta-canvas').height]"))
        assert pg.errors == []
    finally:
        pg.close()


def test_live_run_against_an_opened_file_and_another_model_refused(fixture_models, tmp_path, browser, traces):
    with ServerProcess("--model", fixture_models["deepseek2"], "--data-dir", tmp_path / "runs") as s:
        pg = Page(browser, s.url + "/")
        try:
            live, done = pg.generate(text="Hello there, friend", max_tokens=5, mode="all")
            run_name = "“Hello there, friend”"            # a custom prompt's run is named by its opening words
            assert pg.js("moeviz.runs") == [{"name": run_name, "kind": "live", "tokens": live.n_tokens}]
            story = load(traces["story"])
            pick_file(pg, traces["story"])
            wait_shown(pg, "story.json")
            fig = run_compare(pg, "#compare-all")
            assert [r["name"] for r in fig["runs"]] == [run_name, "story.json"]
            check_figures(fig, [live, story])
            check_table(pg, [live, story], jaccard(live, story))

            # a trace of another model: shown as a run of its own, but never compared
            qwen = load(traces["qwen"])
            pick_file(pg, traces["qwen"])
            wait_shown(pg, "qwen.moetrace")
            check_dormant(pg, qwen)
            pg.page.check(f"#compare-runs input[data-name={json.dumps(run_name, ensure_ascii=False)}]")
            pg.page.check("#compare-runs input[data-name='qwen.moetrace']")
            pg.page.click("#compare-selected")
            pg.page.wait_for_function("moeviz.compare() && moeviz.compare().error")
            error = pg.js("moeviz.compare().error")
            assert error.startswith("cannot compare runs of different models: ")
            assert pg.js("Object.keys(moeviz.compare())") == ["error"]                  # no numbers
            assert pg.page.inner_text("#compare-status") == error and "\n" not in error
            assert "error" in pg.page.get_attribute("#compare-status", "class").split()
            assert pg.page.is_hidden("#compare-result") and pg.page.locator("td.jaccard:visible").count() == 0

            # the server's model comes back for the next live run
            live2, _ = pg.generate(text="Another prompt", max_tokens=4, mode="all")
            assert pg.js("moeviz.model.name") == live2.model["name"] != qwen.model["name"]
            check_dormant(pg, live2)
            assert pg.errors == []
        finally:
            pg.close()
