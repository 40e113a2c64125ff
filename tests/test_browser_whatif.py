"""What-if runs in real Chromium (issue 15): the top-k slider, masking experts by clicking
heatmap cells and regenerating, the current token's next-token candidates, and the
compare card's per-token diff of runs that share tokens (a masked rerun, a same-token
replay), each checked against the trace files with numpy."""
import json

import numpy as np
import pytest
from browser import DORMANT_RGB, Page, browser, pytestmark  # noqa: F401
from conftest import run_cli
from serverproc import ServerProcess
from test_browser_files import pick_file, wait_shown

from moeviz.trace import load

PROMPT = "The quick brown fox jumps over the lazy dog, and then"


@pytest.fixture(scope="module")
def server(fixture_models, tmp_path_factory):
    # llama fixture: 4 MoE layers x 8 experts, top-2
    with ServerProcess("--model", fixture_models["llama"], "--n-ctx", "512",
                       "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def click_cell(pg, row, expert, view="heatmap"):
    """Click the centre of a cell, in client coordinates."""
    x, y = pg.js(f"""(() => {{
        const c = document.getElementById('{view}-canvas'), r = c.getBoundingClientRect(), p = moeviz.cellCenter('{view}', {row}, {expert});
        return [r.left + (p.x + 0.5) * r.width / c.width, r.top + (p.y + 0.5) * r.height / c.height]; }})()""")
    pg.page.mouse.click(x, y)


def set_slider(pg, k):
    pg.page.eval_on_selector("#wi-k", f"(el) => {{ el.value = '{k}'; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}")


def diff_rows(a, b, shared):
    """Per shared token: [(model layer, removed, added)] where the expert sets differ."""
    layers = a.model["moe_layers"]
    out = []
    for t in range(shared):
        row = []
        for li, layer in enumerate(layers):
            sa, sb = set(a.expert_ids[t, li].tolist()), set(b.expert_ids[t, li].tolist())
            if sa != sb:
                row.append((layer, sorted(sa - sb), sorted(sb - sa)))
        out.append(row)
    return out


def compare_own_runs(pg):
    """Compare the page's own runs and opened files (the server's earlier runs, which the
    compare list also shows, left out)."""
    for r in pg.js("moeviz.runs"):
        if r["kind"] not in ("server", "api"):
            pg.page.check(f"#compare-runs input[data-name={json.dumps(r['name'], ensure_ascii=False)}]")
    pg.page.click("#compare-selected")


def check_token_diff(fig, a, b):
    d = fig["tokenDiff"]
    ids_a, ids_b = [t["id"] for t in a.tokens], [t["id"] for t in b.tokens]
    shared = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
    assert d["shared"] == shared and d["k"] == [a.k, b.k]
    want = diff_rows(a, b, shared)
    got = [[(c["layer"], c["removed"], c["added"]) for c in r["changes"]] for r in d["rows"]]
    assert got == want
    L = len(a.model["moe_layers"])
    assert d["setAgreement"] == pytest.approx(1 - sum(map(len, want)) / (shared * L))
    jac = np.mean([[len(set(a.expert_ids[t, li]) & set(b.expert_ids[t, li])) /
                    len(set(a.expert_ids[t, li]) | set(b.expert_ids[t, li])) for li in range(L)] for t in range(shared)])
    assert d["meanJaccard"] == pytest.approx(jac, abs=1e-12)
    return d


def test_slider_mask_candidates_and_the_diff_of_a_masked_rerun(server, browser):
    pg = Page(browser, server.url + "/")
    try:
        plain, _ = pg.generate(text=PROMPT, max_tokens=8, mode="all")
        assert plain.k == 2 and pg.page.is_hidden("#candidates")
        assert "top-2" in pg.page.inner_text("#model-arch") and "model:" not in pg.page.inner_text("#model-arch")

        # the slider: 3 experts per token; mask mode: two heatmap cells; candidates on
        set_slider(pg, 3)
        assert pg.page.inner_text("#wi-k-value") == "3 of 8 (model: 2)"
        pg.page.click("#wi-mask-mode")
        assert pg.page.get_attribute("#wi-mask-mode", "aria-pressed") == "true"
        click_cell(pg, 1, 4)
        click_cell(pg, 2, 0)
        click_cell(pg, 3, 6)
        click_cell(pg, 3, 6)          # a second click unmasks
        assert pg.js("moeviz.whatIf().mask") == [[1, 4], [2, 0]]
        assert pg.js("moeviz.chosenCell") is None          # in mask mode a click masks, it does not choose
        assert pg.page.inner_text("#wi-mask-count") == "2 masked"
        pg.settle()
        # a red cross over each masked cell (the overlay, not the heatmap's own pixels)
        red = pg.js("""(() => { const o = document.querySelector('.mask-overlay').getContext('2d');
            return [[1, 4], [2, 0], [3, 6]].map(([l, e]) => { const p = moeviz.cellCenter('heatmap', l, e);
                return Array.from(o.getImageData(p.x, p.y, 1, 1).data); }); })()""")
        assert red[0][0] > 200 and red[0][3] > 0 and red[1][0] > 200 and red[2][3] == 0
        # the overlay reads the heatmap's position only after a resize (not every frame): it
        # still lies exactly over the heatmap at another window size
        pg.page.set_viewport_size({"width": 900, "height": 900})
        pg.settle()
        over = pg.js("""(() => { const o = document.querySelector('.mask-overlay'), g = document.getElementById('heatmap-canvas');
            return [o.style.left, o.style.top, o.style.width, o.style.height, o.width, o.height].join(' ') + ' | ' +
              [g.offsetLeft + 'px', g.offsetTop + 'px', g.clientWidth + 'px', g.clientHeight + 'px', g.width, g.height]
              .join(' '); })()""")
        mine, grid = over.split(" | ")
        assert mine == grid, over
        red = pg.js("""(() => { const o = document.querySelector('.mask-overlay').getContext('2d');
            const p = moeviz.cellCenter('heatmap', 1, 4); return Array.from(o.getImageData(p.x, p.y, 1, 1).data); })()""")
        assert red[0] > 200 and red[3] > 0
        pg.page.set_viewport_size({"width": 1400, "height": 1000})
        pg.settle()
        pg.page.check("#wi-candidates")
        masked, done = pg.generate(text=PROMPT, max_tokens=8, mode="all")
        sent = [m for m in pg.sent if m.get("type") == "generate"][-1]
        assert sent["experts_per_token"] == 3 and sent["mask"] == [[1, 4], [2, 0]] and sent["candidates"] == 10
        assert masked.k == 3 and masked.mask == [(1, 4), (2, 0)]
        assert not (masked.expert_ids[:, 1] == 4).any() and not (masked.expert_ids[:, 2] == 0).any()
        assert pg.js("moeviz.k") == 3
        assert "top-3 (model: top-2) · 2 masked" in pg.page.inner_text("#model-arch")
        # the masked cells stay dormant in the heatmap
        px = np.array(pg.cell_pixels("heatmap", 4, 8)).reshape(4, 8, 3)
        assert (px[1, 4] == DORMANT_RGB).all() and (px[2, 0] == DORMANT_RGB).all()

        # candidates of the current token (the last one), as recorded
        assert pg.page.is_visible("#candidates")
        c = pg.js("moeviz.candidates()")
        t = masked.n_tokens - 1
        assert c["t"] == t and [x["id"] for x in c["candidates"]] == masked.candidate_ids[t].tolist()
        np.testing.assert_allclose([x["p"] for x in c["candidates"]], masked.candidate_probs[t], atol=1e-6)
        assert [x["text"] for x in c["candidates"]] == [masked.candidate_texts[i] for i in masked.candidate_ids[t]]
        assert pg.page.locator("#cand-list li").count() == 10
        # a pinned token shows its own; the next token (greedy) is its first candidate, outlined
        pg.page.click(f"#tokens [data-i='{masked.n_prompt}']")
        pg.settle()
        c = pg.js("moeviz.candidates()")
        assert c["t"] == masked.n_prompt
        nxt = masked.tokens[masked.n_prompt + 1]["id"]
        assert c["candidates"][0]["id"] == nxt
        assert pg.page.get_attribute("#cand-list li.actual", "data-id") == str(nxt)

        # compare the plain run with the masked one: the per-token diff over the shared tokens
        compare_own_runs(pg)
        pg.page.wait_for_function("moeviz.compare() !== null && moeviz.compare().tokenDiff !== null")
        pg.settle()
        d = check_token_diff(pg.js("moeviz.compare()"), plain, masked)
        assert d["shared"] >= plain.n_prompt and d["setAgreement"] < 1
        spans = pg.js("Array.from(document.querySelectorAll('#td-tokens .tdt'), (s) => Number(s.dataset.changed))")
        assert spans == [len(r["changes"]) for r in d["rows"]]
        first = next(i for i, r in enumerate(d["rows"]) if r["changes"])
        pg.page.hover(f"#td-tokens [data-t='{first}']")
        detail = pg.page.inner_text("#td-detail")
        c0 = d["rows"][first]["changes"][0]
        assert detail.startswith(f"#{first} ") and f"L{c0['layer']}: " in detail
        # the two texts side by side
        texts = [pg.page.inner_text("#td-a-text"), pg.page.inner_text("#td-b-text")]
        tail = lambda tr: "".join(x["text"] for x in tr.tokens[d["shared"]:])   # noqa: E731
        for text, tr in zip(texts, (plain, masked)):
            if tail(tr):
                assert f"⟦{tail(tr)}⟧" in text
        # the saved trace keeps k, the mask and the candidates
        saved = pg.js("moeviz.trace()")
        assert saved["settings"]["experts_per_token"] == 3 and len(saved["candidates"]["ids"]) == masked.n_tokens

        # clearing: the next run is the model's own routing again
        pg.page.click("#wi-mask-clear")
        set_slider(pg, 2)
        pg.page.uncheck("#wi-candidates")
        again, _ = pg.generate(text=PROMPT, max_tokens=8, mode="all")
        assert again.k == 2 and again.mask == [] and again.candidate_ids is None
        np.testing.assert_array_equal(again.expert_ids, plain.expert_ids)
        assert pg.errors == []
    finally:
        pg.close()


def test_a_same_token_replay_opened_beside_its_original(server, browser, fixture_models, tmp_path):
    m, common = fixture_models["llama"], ["--kv-type", "f32", "--flash-attn", "off", "--n-ctx", "512"]
    run_cli("record", "-m", m, "--prompt", PROMPT, "--max-tokens", "10", "--temperature", "0.8", "--candidates", "5",
            "-o", tmp_path / "orig.json", *common, check=True)
    run_cli("record", "-m", m, "--tokens-from", tmp_path / "orig.json", "--experts-per-token", "1", "--mask", "*:1",
            "--candidates", "5", "-o", tmp_path / "whatif.moetrace", *common, check=True)
    a, b = load(tmp_path / "orig.json"), load(tmp_path / "whatif.moetrace")
    pg = Page(browser, server.url + "/")
    try:
        pick_file(pg, tmp_path / "orig.json")
        wait_shown(pg, "orig.json")
        pick_file(pg, tmp_path / "whatif.moetrace")
        wait_shown(pg, "whatif.moetrace")
        assert pg.js("moeviz.k") == 1 and "top-1 (model: top-2) · 4 masked" in pg.page.inner_text("#model-arch")
        c = pg.js("moeviz.candidates()")                 # the binary form's candidates and texts
        assert [x["id"] for x in c["candidates"]] == b.candidate_ids[-1].tolist()
        assert [x["text"] for x in c["candidates"]] == [b.candidate_texts[i] for i in b.candidate_ids[-1]]
        compare_own_runs(pg)
        pg.page.wait_for_function("moeviz.compare() !== null && moeviz.compare().tokenDiff !== null")
        pg.settle()
        d = check_token_diff(pg.js("moeviz.compare()"), a, b)
        assert d["shared"] == a.n_tokens and d["k"] == [2, 1]      # top-k halved, the same tokens
        assert pg.page.inner_text("#td-summary").startswith(f"{a.n_tokens} shared tokens ({a.n_prompt} prompt) · top-2 vs top-1")
        assert pg.errors == []
    finally:
        pg.close()
