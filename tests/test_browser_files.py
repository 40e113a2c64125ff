"""Trace files in the page, in real Chromium: opening `moeviz record` traces (JSON and
.moetrace) by file picker and by drag and drop in live, replay and static modes,
saving the shown run as a trace file, bad files refused in one line with the run
kept, and the heatmap's CSV and PNG exports.

Every figure is checked against the trace files read with moeviz.trace.load and
recounted with numpy (check_dormant from test_browser)."""
import base64
import json
import struct
import urllib.request

import numpy as np
import pytest
from browser import Page, browser, pytestmark, server  # noqa: F401
from conftest import run_cli
from serverproc import static_server
from test_browser import check_dormant

from moeviz.trace import load, loads

READY = "moeviz.done && moeviz.applied === moeviz.tokens && moeviz.tokens > 0"


# ---- helpers (test_browser_compare imports them) ------------------------------------------

def record(model, path, prompt, *extra, max_tokens=10):
    run_cli("record", "-m", model, "--prompt", prompt, "-o", path, "--max-tokens", max_tokens,
            "--temperature", 0, *extra, check=True)
    return path


def wait_shown(pg, name, timeout=30_000):
    """Wait until the page shows the run named `name`, played to its end."""
    pg.page.wait_for_function(f"moeviz.source && moeviz.source.name === {json.dumps(name)} && {READY}",
                              timeout=timeout)
    pg.settle()


def pick_file(pg, path):
    pg.page.set_input_files("#open-file", str(path))


def drop_bytes(pg, data: bytes, name: str, target="#stream"):
    """Drop a file built in the page from `data` on `target`, as a real drag and drop
    delivers it: dragenter, dragover, drop, each carrying one DataTransfer."""
    pg.page.evaluate("""([b64, name, target]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name));
        const el = document.querySelector(target);
        for (const type of ["dragenter", "dragover", "drop"]) {
            el.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""", [base64.b64encode(data).decode(), name, target])


def download(pg, selector):
    """Click `selector`, return (suggested file name, bytes) of the download it starts."""
    with pg.page.expect_download(timeout=15_000) as d:
        pg.page.click(selector)
    dl = d.value
    with open(dl.path(), "rb") as f:
        return dl.suggested_filename, f.read()


def png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def status_line(pg):
    return pg.page.inner_text("#status"), pg.page.get_attribute("#status", "class")


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def traces(fixture_models, tmp_path_factory):
    """`moeviz record` traces of the deepseek2 fixture: JSON, and .moetrace with router probabilities."""
    tmp = tmp_path_factory.mktemp("traces")
    model = fixture_models["deepseek2"]
    return {
        "json": record(model, tmp / "code.json", "def add(a, b):\n    return a + b"),
        "bin": record(model, tmp / "story.moetrace", "Once upon a time, in a quiet harbour town", "--probs",
                      max_tokens=14),
    }


@pytest.fixture(scope="module")
def site(traces, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "out"
    run_cli("export", "--out", out, traces["json"], check=True)
    with static_server(out) as url:
        yield url


# ---- tests -----------------------------------------------------------------------------------

def test_open_by_file_picker_in_live_mode(server, browser, traces):
    pg = Page(browser, server.url + "/")
    try:
        for kind, name in (("json", "code.json"), ("bin", "story.moetrace")):
            trace = load(traces[kind])
            pick_file(pg, traces[kind])
            wait_shown(pg, name)
            assert pg.js("moeviz.source.kind") == "file" and pg.js("moeviz.mode") == "live"
            assert pg.js("moeviz.tokens") == trace.n_tokens and pg.js("moeviz.promptTokens") == trace.n_prompt
            assert pg.page.inner_text("#stat-token").split() == [str(trace.n_tokens), "/", str(trace.n_tokens)]
            assert pg.js("moeviz.tokenTexts()") == [t["text"] for t in trace.tokens]
            assert pg.js("moeviz.hasProbs") == (trace.probs is not None)
            check_dormant(pg, trace)
            text, cls = status_line(pg)
            assert text.startswith(f"{name}: ") and "error" not in cls
        assert pg.js("moeviz.runs.filter((r) => r.kind !== 'server' && r.kind !== 'api')") == [{"name": "code.json", "kind": "file", "tokens": load(traces["json"]).n_tokens},
                                        {"name": "story.moetrace", "kind": "file", "tokens": load(traces["bin"]).n_tokens}]
        # the same playback as a live run: scrub back, the figures follow the cursor
        trace = load(traces["bin"])
        pg.page.fill("#pb-scrub", str(trace.n_prompt))
        pg.settle()
        check_dormant(pg, trace, trace.n_prompt)
        assert pg.errors == []
    finally:
        pg.close()


def test_open_by_drop_in_static_mode(site, browser, traces):
    pg = Page(browser, site)
    try:
        pg.page.wait_for_function(READY, timeout=30_000)
        assert pg.js("moeviz.mode") == "static" and pg.js("moeviz.source.kind") == "site"
        for kind, name in (("bin", "story.moetrace"), ("json", "code.json")):
            trace = load(traces[kind])
            drop_bytes(pg, traces[kind].read_bytes(), name)
            wait_shown(pg, name)
            assert pg.js("moeviz.tokens") == trace.n_tokens
            assert pg.page.inner_text("#stat-token").split() == [str(trace.n_tokens), "/", str(trace.n_tokens)]
            check_dormant(pg, trace)
        assert pg.js("document.body.classList.contains('dropping')") is False
        assert pg.errors == []
    finally:
        pg.close()


def test_save_a_live_run_and_reopen_it_in_replay_mode(server, browser, traces):
    pg = Page(browser, server.url + "/")
    try:
        live, done = pg.generate(prompt_name="story-lighthouse", max_tokens=7, probs=True, mode="all")
        name, data = download(pg, "#save-trace")
        assert name.endswith(".json")
        saved = loads(data)              # moeviz.trace's own reader accepts it
        # exactly the routing the page received (the websocket frames, rebuilt) ...
        assert np.array_equal(saved.expert_ids, live.expert_ids)
        assert np.array_equal(saved.weights, live.weights) and np.array_equal(saved.probs, live.probs)
        assert saved.tokens == live.tokens and saved.prompt == live.prompt and saved.model == live.model
        assert saved.settings == live.settings and saved.finish == done["finish"]
        assert saved.meta["created"] and saved.meta["moeviz_version"]
        # ... and the trace the server stored for this run, up to the wire's 6 decimals
        run_id = done["permalink"].rsplit("/", 1)[1]
        with urllib.request.urlopen(f"{server.url}/api/runs/{run_id}.moetrace", timeout=10) as r:
            stored_bytes = r.read()
        stored = loads(stored_bytes)
        assert np.array_equal(saved.expert_ids, stored.expert_ids)
        assert np.abs(saved.weights - stored.weights).max() <= 5e-7 + 1e-7
        assert np.abs(saved.probs - stored.probs).max() <= 5e-7 + 1e-7
        assert saved.tokens == stored.tokens and saved.finish == stored.finish
        # the exact stored bytes, offered when the run has a permalink
        name, data = download(pg, "#save-moetrace")
        assert name.endswith(".moetrace") and data == stored_bytes

        # replay mode (/r/<id>): a dropped .moetrace replaces the run; saving it gives it back exactly
        pg.page.goto(server.url + done["permalink"])
        pg.page.wait_for_function(READY, timeout=30_000)
        assert pg.js("moeviz.mode") == "replay" and pg.js("moeviz.source.kind") == "permalink"
        other = load(traces["bin"])
        drop_bytes(pg, traces["bin"].read_bytes(), "story.moetrace", target="body")
        wait_shown(pg, "story.moetrace")
        check_dormant(pg, other)
        assert pg.page.is_hidden("#save-moetrace")           # a file has no stored trace on the server
        _, data = download(pg, "#save-trace")
        again = loads(data)
        assert again.equals(other)                           # float32 exact, header and meta included
        assert pg.errors == []
    finally:
        pg.close()


def bad_files(traces):
    good = traces["bin"].read_bytes()
    trace = json.loads(traces["json"].read_text())
    bad_id = json.loads(traces["json"].read_text())
    bad_id["routing"]["expert_ids"][2][1][0] = 99
    n_tokens = len(trace["tokens"])
    short = json.loads(traces["json"].read_text())
    short["routing"]["weights"] = short["routing"]["weights"][:-1]
    assert b'"version":1,' in good
    return [
        ("notes.txt", b"just some notes\n", "not a moeviz trace: neither a .moetrace file nor JSON text"),
        ("other.json", b'{"hello": "world"}', "not a moeviz trace (format is null, expected \"moeviz-trace\")"),
        ("cut.moetrace", good[: len(good) - 100], "truncated .moetrace: array "),
        ("head.moetrace", good[:40], "truncated .moetrace: the header runs past the end of the file"),
        ("v2.moetrace", good.replace(b'"version":1,', b'"version":2,', 1), "unsupported trace version 2"),
        ("ids.json", json.dumps(bad_id).encode(), "routing.expert_ids[2][1][0] = 99 is outside [0, 16)"),
        ("short.json", json.dumps(short).encode(), f"routing.weights has {n_tokens - 1} rows, expected [{n_tokens}, 3, 4]"),
    ]


def test_bad_files_are_refused_in_one_line_and_the_run_stays(server, browser, traces):
    pg = Page(browser, server.url + "/")
    try:
        trace = load(traces["json"])
        pick_file(pg, traces["json"])
        wait_shown(pg, "code.json")
        for name, data, expected in bad_files(traces):
            drop_bytes(pg, data, name)
            pg.page.wait_for_function(f"moeviz.notice.startsWith({json.dumps(f'could not open {name}: ')})")
            pg.settle()
            text, cls = status_line(pg)
            assert text == pg.js("moeviz.notice") and "\n" not in text and "error" in cls.split()
            assert expected in text, (name, text)
            assert pg.js("moeviz.source.name") == "code.json" and pg.js("moeviz.tokens") == trace.n_tokens
        # a file bigger than the page opens: refused by its size, before it is read
        pg.page.evaluate("""() => {
            const mib = new Uint8Array(1 << 20), dt = new DataTransfer();
            dt.items.add(new File(Array(129).fill(mib), "huge.moetrace"));
            document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""")
        pg.page.wait_for_function("moeviz.notice.startsWith('could not open huge.moetrace: ')")
        assert "the page opens traces up to 128 MiB" in pg.js("moeviz.notice")
        # nothing bad joined the runs to compare; the first run is shown with its own numbers
        assert [r["name"] for r in pg.js("moeviz.runs.filter((r) => r.kind !== 'server' && r.kind !== 'api')")] == ["code.json"]
        check_dormant(pg, trace)
        # a good file afterwards clears the error
        pick_file(pg, traces["bin"])
        wait_shown(pg, "story.moetrace")
        text, cls = status_line(pg)
        assert pg.js("moeviz.notice") == "" and "error" not in cls.split() and text.startswith("story.moetrace: ")
        assert pg.errors == []
    finally:
        pg.close()


def test_csv_and_png_exports_of_the_heatmap(server, browser, traces):
    pg = Page(browser, server.url + "/")
    try:
        trace = load(traces["bin"])
        pick_file(pg, traces["bin"])
        wait_shown(pg, "story.moetrace")
        L, E = trace.expert_ids.shape[1], trace.model["n_expert"]

        def csv_rows():
            name, data = download(pg, "#heatmap-csv")
            lines = data.decode().splitlines()
            assert name.endswith(".csv") and lines[0] == "layer,expert,count" and len(lines) == 1 + L * E
            return np.array([[int(v) for v in line.split(",")] for line in lines[1:]])

        def expected(n):
            flat = trace.expert_ids[:n] + (np.arange(L) * E)[None, :, None]
            c = np.bincount(flat.ravel(), minlength=L * E)
            layers = np.repeat(trace.model["moe_layers"], E)
            return np.stack([layers, np.tile(np.arange(E), L), c], axis=1)

        rows = csv_rows()
        assert (rows == expected(trace.n_tokens)).all() and rows[:, 0].min() == 1      # model layer indices
        assert (rows[:, 2] == np.array(pg.js("moeviz.counts()"))).all()
        # the counts at the playback cursor, as the heatmap shows them
        pg.page.fill("#pb-scrub", str(trace.n_prompt))
        pg.settle()
        assert (csv_rows() == expected(trace.n_prompt)).all()
        assert not (expected(trace.n_prompt) == expected(trace.n_tokens)).all()

        name, data = download(pg, "#heatmap-png")
        w, h = png_size(data)
        assert name.endswith(".png")
        cw, ch = pg.js("[document.getElementById('heatmap-canvas').width, document.getElementById('heatmap-canvas').height]")
        # the heatmap as drawn, at its own pixels, with room for the title, model, dormant figure and legend
        assert (w, h) == (cw + 2 * 16, ch + 64 + 36) and cw > 100 and ch > 50
        same = pg.page.evaluate("""async (b64) => {
          const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
          const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
          const x = c.getContext('2d'); x.drawImage(img, 0, 0);
          const src = document.getElementById('heatmap-canvas'), a = src.getContext('2d').getImageData(0, 0, src.width, src.height).data;
          const b = x.getImageData(16, 64, src.width, src.height).data;
          let diff = 0; for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
          const head = x.getImageData(0, 8, img.width, 50).data; let ink = 0;
          for (let i = 0; i < head.length; i += 4) if (head[i] > 150) ink++;
          return { diff, ink }; }""", base64.b64encode(data).decode())
        assert same["diff"] == 0 and same["ink"] > 200, same
        assert pg.errors == []
    finally:
        pg.close()
