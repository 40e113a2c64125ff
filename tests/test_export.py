"""moeviz export: a self-contained static site (page, assets, manifest, traces)."""
import json

import pytest
from conftest import run_cli

from moeviz.trace import load


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
