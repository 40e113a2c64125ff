"""The websocket protocol in-process (TestClient): message order, exact routing,
bad requests answered with `error` while the connection stays usable, queueing."""
import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from moeviz.engine import SamplingSettings
from moeviz.server import ServerSettings, create_app
from moeviz.trace.builder import TraceBuilder
from moeviz.trace.messages import TraceAssembler


@pytest.fixture(scope="module")
def client(engines, tmp_path_factory):
    app = create_app(engines("llama", "native"), ServerSettings(max_prompt_tokens=200, max_tokens=300,
                                                                data_dir=tmp_path_factory.mktemp("runs")))
    with TestClient(app) as c:
        yield c


def run(ws, **request):
    ws.send_text(json.dumps({"type": "generate", **request}))
    msgs = []
    while True:
        m = json.loads(ws.receive_text())
        msgs.append(m)
        if m["type"] in ("done", "error"):
            return msgs


def test_a_run_in_order_with_exact_routing(client, engines):
    with client.websocket_connect("/ws") as ws:
        model = json.loads(ws.receive_text())
        assert model["type"] == "model" and model["model"]["moe_layers"] == [0, 1, 2, 3]
        msgs = run(ws, prompt_name="code-fibonacci", max_tokens=9, temperature=0.0, probs=True)
    kinds = [m["type"] for m in msgs]
    assert kinds == ["start", "prompt"] + ["token"] * 9 + ["done"]
    n_prompt = len(msgs[1]["tokens"])
    assert [m["index"] for m in msgs[2:-1]] == list(range(n_prompt, n_prompt + 9))
    assert all(len(m["expert_ids"]) == 4 and all(len(row) == 2 for row in m["expert_ids"]) for m in msgs[2:-1])
    asm = TraceAssembler()
    for m in [model] + msgs:
        asm.add(m)
    live = asm.trace()
    # The same request through the engine directly gives the same routing.
    e = engines("llama", "native")
    b = TraceBuilder(e.info, None, {})
    from moeviz.prompts import load_prompts
    for ev in e.generate(load_prompts()["code-fibonacci"].prompt, SamplingSettings(max_tokens=9, temperature=0.0), probs=True):
        b.add(ev)
    ref = b.trace()
    assert [t["id"] for t in live.tokens] == [t["id"] for t in ref.tokens]
    np.testing.assert_array_equal(live.expert_ids, ref.expert_ids)
    np.testing.assert_allclose(live.weights, ref.weights, atol=1e-6)
    np.testing.assert_allclose(live.probs, ref.probs, atol=1e-6)
    # The summary's dormant numbers are those of the routing sent.
    used = np.zeros((4, 8), bool)
    for li in range(4):
        used[li, np.unique(live.expert_ids[:, li])] = True
    s = msgs[-1]["summary"]
    assert s["experts_hit"] == used.sum() and s["dormant"] == (~used).sum()
    assert s["dormant_per_layer"] == (~used).sum(1).tolist()
    assert msgs[-1]["finish"]["reason"] == "length" and msgs[-1]["finish"]["n_generated"] == 9


@pytest.mark.parametrize("payload, message", [
    ("not json", "message is not valid JSON"),
    ("[1, 2]", "must be a JSON object with a string 'type'"),
    (json.dumps({"type": "fly"}), "unknown message type 'fly'"),
    (json.dumps({"type": "generate", "prompt_name": "../../etc/passwd"}), "unknown prompt name"),
    (json.dumps({"type": "generate"}), "exactly one of 'prompt_name', 'text' or 'messages'"),
    (json.dumps({"type": "generate", "text": "hi", "max_tokens": 5000}), "over this server's limit of 300"),
    (json.dumps({"type": "generate", "text": "hi", "temperature": -1}), "'temperature' must be a number from 0 to 10, got -1"),
    (json.dumps({"type": "generate", "text": "hi", "seed": "x"}), "'seed' must be an integer"),
    (json.dumps({"type": "generate", "text": "hi", "color": 1}), "unknown field"),
    (json.dumps({"type": "generate", "messages": [{"role": 1}]}), "chat message 0"),
    (json.dumps({"type": "generate", "text": "x" * 70000}), "bytes; the limit is 65536"),
])
def test_bad_requests_get_one_error_and_the_connection_stays_usable(client, payload, message):
    with client.websocket_connect("/ws") as ws:
        ws.receive_text()
        ws.send_text(payload)
        err = json.loads(ws.receive_text())
        assert err["type"] == "error" and message in err["message"]
        msgs = run(ws, text="still works", max_tokens=2)
        assert msgs[-1]["type"] == "done"


def test_prompt_over_the_token_limit(client):
    with client.websocket_connect("/ws") as ws:
        ws.receive_text()
        msgs = run(ws, text="word " * 150, max_tokens=2)
        assert msgs[-1]["type"] == "error" and "this server's limit is 200" in msgs[-1]["message"]


def test_one_generation_per_connection_and_cancel(client):
    with client.websocket_connect("/ws") as ws:
        ws.receive_text()
        ws.send_text(json.dumps({"type": "generate", "text": "Once upon a time", "max_tokens": 300}))
        assert json.loads(ws.receive_text())["type"] == "start"
        ws.send_text(json.dumps({"type": "generate", "text": "again"}))
        ws.send_text(json.dumps({"type": "cancel"}))
        seen = []
        while True:
            m = json.loads(ws.receive_text())
            seen.append(m)
            if m["type"] == "done":
                break
        errors = [m for m in seen if m["type"] == "error"]
        assert len(errors) == 1 and "already running on this connection" in errors[0]["message"]
        assert seen[-1]["finish"]["reason"] in ("cancelled", "eos")


def test_queue_positions_and_disconnect_cancels(client):
    """B waits behind A (told its position); A leaves mid-run; B then runs to the end."""
    a = client.websocket_connect("/ws").__enter__()
    a.receive_text()
    a.send_text(json.dumps({"type": "generate", "text": "Once upon a time", "max_tokens": 300, "temperature": 0.0,
                            "stop": []}))
    assert json.loads(a.receive_text())["type"] == "start"
    with client.websocket_connect("/ws") as b:
        b.receive_text()
        b.send_text(json.dumps({"type": "generate", "text": "Hello", "max_tokens": 3}))
        assert json.loads(b.receive_text()) == {"type": "queued", "position": 1}
        threading.Thread(target=lambda: a.__exit__(None, None, None)).start()   # A disconnects
        rest = []
        while True:
            m = json.loads(b.receive_text())
            rest.append(m["type"])
            if m["type"] in ("done", "error"):
                break
        assert rest[-1] == "done" and "start" in rest
