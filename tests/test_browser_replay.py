"""Replays in real Chromium: an exported static site served by a plain static file
server, and a permalink reopened at the token in its `#t=<n>` fragment."""
import json
import urllib.request

import pytest
from browser import Page, browser, pytestmark  # noqa: F401
from conftest import run_cli
from serverproc import ServerProcess, static_server
from test_browser import check_dormant
from websockets.sync.client import connect

from moeviz.export import export_site
from moeviz.trace import load, save
from moeviz.trace.partial import HEAD_TOKENS
from moeviz.trace.store import RunStore
from test_partial import long_trace


@pytest.fixture(scope="module")
def static_site(fixture_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    traces = []
    for name, prompt in (("code", "def f(x):\n    return x * 2"), ("story", "Once upon a time there was")):
        path = tmp / f"{name}.json"
        run_cli("record", "-m", fixture_models["deepseek2"], "--prompt", prompt, "-o", path,
                "--max-tokens", 12, "--temperature", 0, check=True)
        traces.append(path)
    site = tmp / "out"
    run_cli("export", "--out", site, *traces, check=True)
    with static_server(site) as url:
        yield url, traces


def test_static_site_replays_with_the_traces_dormant_numbers(static_site, browser):
    url, traces = static_site
    pg = Page(browser, url)
    try:
        pg.page.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0",
                                  timeout=30_000)
        pg.settle()
        first = load(traces[0])
        assert pg.js("moeviz.tokens") == first.n_tokens and pg.js("moeviz.mode") == "static"
        check_dormant(pg, first)
        assert pg.errors == []
    finally:
        pg.close()


def test_static_site_ships_binary_traces_and_an_older_sites_json_traces_still_play(fixture_models, tmp_path,
                                                                                   browser):
    """Sites ship runs/*.moetrace (the page loads their arrays as they are); a site
    exported before that, with runs/*.json, still plays, with the same numbers."""
    path = tmp_path / "code.json"
    run_cli("record", "-m", fixture_models["deepseek2"], "--prompt", "def f(x):\n    return x * 2", "-o", path,
            "--max-tokens", 8, "--temperature", 0, check=True)
    site = tmp_path / "site"
    run_cli("export", "--out", site, path, check=True)
    manifest = json.loads((site / "manifest.json").read_text())
    assert [e["file"] for e in manifest["runs"]] == ["runs/code.moetrace"]
    assert (site / "runs/code.moetrace").read_bytes()[:8] == b"MOETRACE"
    # as an older export wrote it: the JSON form, named .json in the manifest
    (site / "runs/code.moetrace").unlink()
    save(load(path), site / "runs/code.json")
    manifest["runs"][0]["file"] = "runs/code.json"
    (site / "manifest.json").write_text(json.dumps(manifest))
    with static_server(site) as url:
        pg = Page(browser, url)
        try:
            pg.page.wait_for_function("moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0",
                                      timeout=30_000)
            pg.settle()
            check_dormant(pg, load(path))
            assert pg.errors == []
        finally:
            pg.close()


def test_permalink_reopens_the_run_at_the_fragment_token(fixture_models, tmp_path, browser):
    with ServerProcess("--model", fixture_models["deepseek2"], "--data-dir", tmp_path / "runs") as s:
        with connect(s.ws_url) as ws:
            ws.recv()
            ws.send(json.dumps({"type": "generate", "text": "Hello there, friend", "max_tokens": 10, "temperature": 0}))
            while True:
                m = json.loads(ws.recv(timeout=60))
                if m["type"] in ("done", "error"):
                    break
        assert m["type"] == "done"
        run_id = m["permalink"].rsplit("/", 1)[1]
        trace = load_bytes(s.url + f"/api/runs/{run_id}.moetrace")
        n = trace.n_prompt + 3
        pg = Page(browser, s.url + m["permalink"] + f"#t={n}")
        try:
            pg.page.wait_for_function(f"moeviz.done && moeviz.applied === {n + 1}", timeout=30_000)
            pg.settle()
            assert pg.js("moeviz.tokens") == trace.n_tokens
            assert pg.js("moeviz.panelToken") == n
            # the token stream shows the same pin (one owner: it survives the run's spans being built)
            assert pg.js("Array.from(document.querySelectorAll('#tokens .pinned'), e => Number(e.dataset.i))") == [n]
            check_dormant(pg, trace, n + 1)
            assert pg.errors == []
        finally:
            pg.close()


def load_bytes(url):
    from moeviz.trace import loads

    with urllib.request.urlopen(url, timeout=10) as r:
        return loads(r.read())


@pytest.mark.parametrize("where", ["site", "permalink"])
def test_a_long_run_is_drawn_from_its_head_then_whole(where, tmp_path, browser):
    """A run longer than its head (1,024 tokens) is drawn from the head at once, then
    whole; its token stream beyond 4,096 tokens is made block by block as needed."""
    n, t = 8000, 5000
    trace = long_trace(n=n)
    if where == "site":
        server = static_server(export_site(tmp_path / "site", [("long", trace)]))
        files, link = ["long.head.moetrace", "long.moetrace"], ""
    else:
        run_id = RunStore(tmp_path / "runs").save(trace)
        server = ServerProcess("--data-dir", tmp_path / "runs")
        files, link = [f"{run_id}.moetrace?head={HEAD_TOKENS}", f"{run_id}.moetrace"], f"/r/{run_id}"
    with server as s:
        url = s if isinstance(s, str) else s.url
        pg = Page(browser, f"{url}{link}#t={t}")
        try:
            pg.page.wait_for_function(f"moeviz.done && moeviz.tokens === {n} && moeviz.applied === {t + 1}",
                                      timeout=60_000)
            pg.settle()
            fetched = pg.js("performance.getEntriesByType('resource').map((r) => r.name)"
                            ".filter((name) => name.includes('.moetrace'))")
            assert [f.rsplit("/", 1)[1] for f in fetched] == files          # the head first
            check_dormant(pg, trace, t + 1)
            spans = pg.js("document.querySelectorAll('#tokens .tok').length")
            assert 4096 < spans < n                                          # blocks made as needed
            assert pg.js("document.querySelector('#tokens .tok.pinned').dataset.i") == str(t)
            assert pg.js("document.querySelector('#tokens .tok.pinned').textContent") == trace.tokens[t]["text"]
            # scrolled to the end, the stream makes the last block
            pg.page.eval_on_selector("#tokens", "(el) => { el.scrollTop = el.scrollHeight; }")
            pg.page.wait_for_function(f"document.querySelector('#tokens .tok[data-i=\"{n - 1}\"]') !== null")
            assert pg.errors == []
        finally:
            pg.close()

