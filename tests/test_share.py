"""What makes a run shareable, without a browser: the prompts that suit a model, runs
carrying their prompt's title, permalink pages with Open Graph tags and a preview PNG
of the run's heatmap, and an HTML page (not JSON) for a permalink that leads nowhere."""
import json
import re
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_protocol import run

from moeviz.preview import DORMANT, GRID, render_png, run_title, selection_counts
from moeviz.prompts import PromptLibraryError, load_prompts, model_kind, suited
from moeviz.server import ServerSettings, create_app
from moeviz.trace import loads


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of an 8-bit, filter-0 PNG as render_png writes it."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", None, None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_prompts_say_which_models_they_suit(tmp_path):
    lib = load_prompts()
    assert model_kind("moeviz-demo-moe") == "demo" and model_kind("Qwen3-30B-A3B") == "general"
    demo = [p.name for p in suited(lib.values(), "demo")]
    general = [p.name for p in suited(lib.values(), "general")]
    # the demo model (Python code and Python's docs only) is offered code, docstrings and docs
    assert "story-lighthouse" not in demo and "translate-en-fr" not in demo and "chat-advice" not in demo
    assert {lib[n].domain for n in demo} == {"code", "docstrings", "docs"} and len(demo) >= 5
    assert "story-lighthouse" in general and "py-read-config" not in general
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "text": "x", "models": ["giant"]}))
    with pytest.raises(PromptLibraryError, match="'models' must be a list of demo, general"):
        load_prompts(tmp_path)


@pytest.fixture()
def client(engines, tmp_path):
    with TestClient(create_app(engines("deepseek2", "callback"), ServerSettings(data_dir=tmp_path / "runs"))) as c:
        yield c


def generate(c, **req):
    with c.websocket_connect("/ws") as ws:
        ws.receive_text()
        return run(ws, **req)


def test_a_permalink_page_is_named_described_and_previewed(client):
    prompts = client.get("/api/prompts").json()
    assert prompts["model_kind"] == "general"
    suits = {p["name"]: p["suits"] for p in prompts["prompts"]}
    assert suits["story-lighthouse"] and suits["code-fibonacci"] and not suits["py-read-config"]

    msgs = generate(client, prompt_name="code-fibonacci", max_tokens=4, temperature=0.0)
    start, done = msgs[0], msgs[-1]
    assert start["settings"]["prompt_title"] == "Python: Fibonacci" and start["settings"]["prompt_name"] == "code-fibonacci"
    run_id = done["permalink"].rsplit("/", 1)[1]
    trace = loads(client.get(f"/api/runs/{run_id}.moetrace").content)
    assert trace.settings["prompt_title"] == "Python: Fibonacci" and run_title(trace) == "Python: Fibonacci"

    page = client.get(done["permalink"])
    assert page.status_code == 200
    og = dict(re.findall(r'<meta property="(og:[a-z:]+)" content="([^"]*)"', page.text))
    assert og["og:title"] == "Python: Fibonacci · moeviz"
    counts = selection_counts(trace)
    assert f"{int((counts == 0).sum())} of {counts.size} experts never chosen" in og["og:description"]
    assert og["og:image"] == f"http://testserver/r/{run_id}/preview.png"
    assert "<title>Python: Fibonacci · moeviz</title>" in page.text

    img = client.get(f"/r/{run_id}/preview.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    px = decode_png(img.content)
    assert px.shape == (630, 1200, 3)
    # the heatmap: a cell's centre is the dormant colour exactly when the run never chose it
    m = trace.model
    (gx0, gy0, gw, gh), n_layer, E = GRID, m["n_layer"], m["n_expert"]
    for row, layer in enumerate(m["moe_layers"]):
        y = gy0 + int((layer + 0.5) * gh / n_layer)
        for e in range(E):
            x = gx0 + int((e + 0.5) * gw / E)
            assert (tuple(px[y, x]) == DORMANT) == (counts[row, e] == 0), (layer, e)
    assert render_png(trace) == img.content


def test_a_bad_permalink_is_an_html_page_with_a_way_back(client):
    r = client.get("/r/AAAAAAAAAAAAAAAA")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "No such run" in r.text and 'href="/"' in r.text and "AAAAAAAAAAAAAAAA" in r.text
    assert client.get("/r/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/r/AAAAAAAAAAAAAAAA/preview.png").status_code == 404
    api = client.get("/api/runs/AAAAAAAAAAAAAAAA")              # the JSON API keeps its JSON
    assert api.status_code == 404 and api.json() == {"error": "no such run"}
