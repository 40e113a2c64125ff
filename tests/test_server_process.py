"""`moeviz serve` as a real subprocess on loopback, driven by a websocket client."""
import json
import urllib.request

import pytest
from serverproc import ServerProcess, banner_url
from websockets.sync.client import connect

from moeviz.trace.messages import TraceAssembler


@pytest.fixture(scope="module")
def server(fixture_models, tmp_path_factory):
    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "1024",
                       "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_banner_http_and_json_endpoints(server):
    assert banner_url(server.banner) == server.url + "/"
    assert "deepseek2" in server.banner and "capture native" in server.banner
    assert get_json(server.url + "/health")["status"] == "ok"
    model = get_json(server.url + "/api/model")
    assert model["moe_layers"] == [1, 2, 3] and model["dense_layers"] == [0] and model["capture"] == "native"
    assert len(get_json(server.url + "/api/prompts")["prompts"]) >= 8
    with urllib.request.urlopen(server.url + "/", timeout=5) as r:
        assert "moeviz" in r.read().decode()


@pytest.mark.smoke     # the fast tier's one real server (tests/conftest.py)
def test_every_token_arrives_once_in_order_with_every_layer(server):
    with connect(server.ws_url) as ws:
        model = json.loads(ws.recv())
        ws.send(json.dumps({"type": "generate", "prompt_name": "story-lighthouse", "max_tokens": 40, "seed": 5}))
        msgs = []
        while not msgs or msgs[-1]["type"] not in ("done", "error"):
            msgs.append(json.loads(ws.recv(timeout=60)))
    assert msgs[-1]["type"] == "done", msgs[-1]
    tokens = [m for m in msgs if m["type"] == "token"]
    prompt = next(m for m in msgs if m["type"] == "prompt")
    n_prompt = len(prompt["tokens"])
    assert [m["index"] for m in tokens] == list(range(n_prompt, n_prompt + len(tokens)))
    assert len(tokens) == msgs[-1]["finish"]["n_generated"]
    assert all(len(m["expert_ids"]) == 3 and all(len(r) == 4 for r in m["expert_ids"]) for m in tokens)
    asm = TraceAssembler()
    for m in [model] + msgs:
        asm.add(m)
    t = asm.trace()
    assert t.n_tokens == n_prompt + len(tokens)


def test_bad_input_leaves_the_server_and_other_clients_fine(server):
    with connect(server.ws_url) as good, connect(server.ws_url) as bad:
        good.recv()
        bad.recv()
        bad.send(b"\xff\xfe not utf-8")
        assert json.loads(bad.recv(timeout=10))["type"] == "error"
        bad.send("{" * 1000)
        assert json.loads(bad.recv(timeout=10))["type"] == "error"
        good.send(json.dumps({"type": "generate", "text": "fine", "max_tokens": 3}))
        kinds = []
        while not kinds or kinds[-1] not in ("done", "error"):
            kinds.append(json.loads(good.recv(timeout=30))["type"])
        assert kinds[-1] == "done"
    assert get_json(server.url + "/health")["status"] == "ok"
