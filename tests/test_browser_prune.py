"""Issue 25 in real Chromium: the prune preview marks the experts `moeviz prune --keep N`
would drop for the shown run (checked against moeviz/prune.py's choice from the trace)
and masks them in a what-if run; the expert-cache tab's policies at a chosen budget equal
moeviz/analysis/cache_plan.py's on the same tokens."""
import numpy as np
import pytest
from browser import Page, browser, pytestmark  # noqa: F401
from serverproc import ServerProcess

from moeviz.analysis import select_tokens
from moeviz.analysis.cache_plan import best_lambda, belady, simulate, static_set
from moeviz.gguf_info import read_model_info
from moeviz.prune import choose_experts

PROMPT = "The quick brown fox jumps over the lazy dog, and then the cat"


@pytest.fixture(scope="module")
def server(fixture_models, tmp_path_factory):
    # llama fixture: 4 MoE layers x 8 experts, top-2
    with ServerProcess("--model", fixture_models["llama"], "--n-ctx", "512",
                       "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def test_prune_preview_marks_and_masks_and_the_cache_policies(server, browser, fixture_models):
    pg = Page(browser, server.url + "/")
    try:
        trace, _ = pg.generate(text=PROMPT, max_tokens=24, mode="all")
        pg.page.fill("#pp-keep", "6")
        pg.page.dispatch_event("#pp-keep", "change")
        pg.page.click("#pp-toggle")
        pg.settle()
        fig = pg.js("moeviz.prunePreview()")
        info = read_model_info(fixture_models["llama"])
        plan = choose_experts(info, [select_tokens(trace)], 6)
        want = sorted([layer, e] for layer, kept in zip(info.moe_layers, plan.kept) for e in range(8) if e not in kept)
        assert fig["on"] and fig["keep"] == 6 and fig["dropped"] == want
        ids = trace.expert_ids
        kept_sel = sum(int(np.isin(ids[:, li], kept).sum()) for li, kept in enumerate(plan.kept))
        assert fig["keptShare"] == pytest.approx(kept_sel / ids.size)
        assert "2 of 8 dropped per layer" in pg.page.inner_text("#pp-note")
        # an outline on each dropped cell's left edge, none on a kept one's
        edge = pg.js("""((pairs) => { const o = document.querySelector('.prune-overlay').getContext('2d');
            return pairs.map(([row, e]) => { const c = moeviz.cellCenter('heatmap', row, e);
                const w = moeviz.cellCenter('heatmap', row, 1).x - moeviz.cellCenter('heatmap', row, 0).x; let best = 0;
                for (let x = Math.ceil(c.x - w / 2 + 0.5); x < c.x - w / 4; x++) best = Math.max(best, o.getImageData(x, c.y, 1, 1).data[3]);
                return best; }); })""" + f"({[[info.moe_layers.index(l), e] for l, e in want[:2]] + [[0, plan.kept[0][0]]]})")
        assert edge[0] > 0 and edge[1] > 0 and edge[2] == 0

        # mask them: the next live run is the what-if, and never selects a dropped expert
        pg.page.click("#pp-mask")
        assert pg.js("moeviz.whatIf().mask") == want
        masked, _ = pg.generate(text=PROMPT, max_tokens=24, mode="all")
        assert sorted(map(list, masked.mask)) == want
        for li, kept in enumerate(plan.kept):
            assert np.isin(masked.expert_ids[:, li], kept).all()

        # the cache tab: policies side by side at 4 experts per layer, over the shown (masked) run
        pg.page.click("[data-an-tab=cache]")
        pg.page.wait_for_selector("td[data-policy=belady]")
        pg.page.fill(".an-budget", "4")
        pg.page.dispatch_event(".an-budget", "change")
        pg.page.click("[data-an-tokens=prompt]")
        pg.page.click("[data-an-tokens=all]")
        ids = masked.expert_ids.astype(np.int64)
        # the table re-renders on a later frame: wait for the one over all the run's tokens at 4 of 8
        pg.page.wait_for_function("document.querySelector('.an-policies th:nth-child(2)').textContent.includes('4 of 8')"
                                  f" && document.querySelector('.an-policies').dataset.tokens === '{len(ids)}'")
        got = pg.js("""Object.fromEntries([...document.querySelectorAll('td[data-policy]')]
            .map((td) => [td.dataset.policy, Number(td.dataset.hitRate)]))""")
        n, L, k = ids.shape
        lam = best_lambda(ids, 8, 4)
        hits = {"lru": simulate(ids, 8, 4, "lru"), "lfu": simulate(ids, 8, 4, "lfu"),
                "lrfu": simulate(ids, 8, 4, "lrfu", lam=lam),
                "static": static_set(ids, 8, 4)[np.arange(L)[None, :, None], ids].sum(axis=(0, 2)),
                "belady": belady(ids, 8, 4)}
        for name, h in hits.items():
            assert got[name] == pytest.approx(h.sum() / (n * k * L), rel=1e-12), name
            assert got[name] <= got["belady"]
        assert not pg.errors
    finally:
        pg.close()
