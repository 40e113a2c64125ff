"""moeviz export: a self-contained static site (page, assets, manifest, traces)."""
import json

import pytest
from conftest import run_cli

from moeviz.trace import load


@pytest.mark.slow
def test_export_traces_and_recorded_prompts(fixture_models, tmp_path):
    t1 = tmp_path / "a.json"
    run_cli("record", "-m", fixture_models["llama"], "--prompt", "hello there", "-o", t1, "--max-tokens", 3, check=True)
    site = tmp_path / "site"
    r = run_cli("export", "--out", site, t1, "--model", fixture_models["llama"], "--max-tokens", 4, check=True)
    assert "wrote a static site with 9 runs" in r.stderr
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["format"] == "moeviz-site" and len(manifest["runs"]) == 9
    assert manifest["model"]["name"] == "moeviz-fixture-llama"
    names = [e["name"] for e in manifest["runs"]]
    assert names[0] == "a" and "code-fibonacci" in names
    for e in manifest["runs"]:
        t = load(site / e["file"])
        assert t.n_tokens == e["n_tokens"]
    assert load(site / "runs/a.moetrace").equals(load(t1))
    assert (site / "index.html").exists() and (site / "static").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]   # no temporary folder left


def test_export_refuses_to_replace_a_folder_that_is_not_a_site(fixture_models, tmp_path):
    t1 = tmp_path / "a.json"
    run_cli("record", "-m", fixture_models["llama"], "--prompt", "hi", "-o", t1, "--max-tokens", 2, check=True)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    r = run_cli("export", "--out", precious, t1)
    assert r.returncode == 1 and "is not a moeviz site; refusing to replace it" in r.stderr
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_export_with_a_bad_trace_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nope"}')
    r = run_cli("export", "--out", tmp_path / "s", bad)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "not a moeviz trace" in r.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_the_preview_image_names_the_run_its_model_and_dormant_figure(fixture_models, tmp_path):
    """og:image (a permalink's, an exported site's preview.png): the run's title, its
    model, the dormant figure (masked experts apart) and a legend, around the heatmap."""
    import numpy as np
    from test_share import decode_png

    from moeviz import preview

    out = tmp_path / "m.json"
    run_cli("record", "-m", fixture_models["deepseek2"], "--prompt", "Hello there", "--max-tokens", 4,
            "--temperature", 0, "--mask", "1:0,2:5", "-o", out, check=True)
    t = load(out)
    px = decode_png(preview.render_png(t))
    counts = preview.selection_counts(t)
    masked = {(0, 0), (1, 5)}
    n_dormant = sum(1 for (r, e), c in np.ndenumerate(counts) if c == 0 and (r, e) not in masked)
    figure = f"{n_dormant} of {counts.size - 2} experts dormant ({100 * n_dormant / (counts.size - 2):.1f}%), 2 masked"
    title = "“Hello there”"

    def drawn(text, x, y, color, size):
        img = px.copy()                 # the caption's box cleared to the background, then drawn
        img[y:y + -(-size * 5 // 4), x:x + preview.text_width(text, size)] = preview.BG
        preview.draw_text(img, x, y, text, color, size)
        return img

    # each caption is in the picture exactly as drawn from the expected words
    x_fig = preview.WIDTH - 40 - preview.text_width(figure, preview.SMALL_PX)
    for text, x, y, color, size in ((title, 40, 24, preview.FG, preview.TITLE_PX),
                                    (figure, x_fig, 72, preview.ACCENT, preview.SMALL_PX),
                                    ("never chosen (dormant)", 64, preview.GRID[1] + preview.GRID[3] + 18,
                                     preview.MUTED, preview.SMALL_PX)):
        assert (drawn(text, x, y, color, size) == px).all(), text
        assert (px[y:y + size, x:x + preview.text_width(text, size)] != preview.BG).any(axis=2).sum() > 50 * len(text) // 4
    model_line = px[72:92, 40:x_fig - 24]
    assert (model_line != preview.BG).any(axis=2).sum() > 400           # the model's name and shape
    # another title draws another title band, the heatmap unchanged
    t.settings["prompt_title"] = "Python: Fibonacci"
    other = decode_png(preview.render_png(t))
    assert (other[24:62] != px[24:62]).any()
    g = preview.GRID
    assert (other[g[1]:g[1] + g[3], g[0]:g[0] + g[2]] == px[g[1]:g[1] + g[3], g[0]:g[0] + g[2]]).all()
