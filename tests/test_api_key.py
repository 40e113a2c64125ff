"""`serve --api-key` guards everything that shows prompts or output (issue 23 item 7,
issue 21 findings 3 and 4), on a real `moeviz serve` on loopback: each surface without
the key, with a wrong or empty one, and with the key as Bearer, x-api-key or the page's
cookie. /health, /v1/models and the page itself stay open."""
import json
import urllib.error
import urllib.request

import pytest
from conftest import run_cli
from serverproc import ServerProcess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

KEY = "sk-moeviz-secret"
PROMPT = "def secret_function_name(x):"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--api-key", KEY, "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        # one run made with the key: it is listed live and stored behind a permalink
        status, _, _ = call(s, "/v1/completions", {"prompt": PROMPT, "max_tokens": 3, "temperature": 0},
                               headers=bearer(KEY))
        assert status == 200
        s.run_id = _run_of(s)
        yield s


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def cookie(key):
    return {"Cookie": f"moeviz_api_key={key}"}


def call(server, path, body=None, headers=None, method=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def _run_of(server):
    status, body, _ = call(server, "/api/live", headers=bearer(KEY))
    assert status == 200
    runs = json.loads(body)["runs"]
    assert runs and runs[0]["status"] == "done"
    return runs[0]["run"]


def guarded(server):
    """(method, path, body) of every HTTP surface that shows prompts or output."""
    run = server.run_id
    trace = call(server, f"/api/runs/{run}.moetrace", headers=bearer(KEY))[1]
    return [
        ("GET", "/api/live", None),
        ("GET", f"/api/runs/{run}", None),
        ("GET", f"/api/runs/{run}.moetrace", None),
        ("GET", f"/api/runs/{run}.moetrace?head=2", None),
        ("GET", f"/api/runs/{run}/stats", None),
        ("POST", "/api/runs", trace),
        ("GET", f"/r/{run}", None),
        ("GET", f"/r/{run}/preview.png", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 1}).encode()),
        ("POST", "/v1/chat/completions",
         json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}).encode()),
    ]


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), bearer(""), {"Authorization": "Bearer"},
                                     {"x-api-key": "wrong"}, cookie("wrong"), {"Authorization": f"Basic {KEY}"}],
                         ids=["none", "wrong", "empty-bearer", "bare-bearer", "wrong-x-api-key", "wrong-cookie",
                              "basic"])
def test_every_guarded_surface_refuses_without_the_key(server, headers):
    for method, path, body in guarded(server):
        status, answer, _ = call(server, path, headers=headers, method=method, raw=body)
        assert status == 401, (path, status)
        assert PROMPT.encode() not in answer and b"secret_function_name" not in answer, path
        if path.startswith("/v1/"):
            assert json.loads(answer)["error"]["type"] == "authentication_error"
        elif path == f"/r/{server.run_id}":
            assert b"API key needed" in answer and b"js/apikey.js" in answer     # the page that asks for it
        else:
            assert json.loads(answer) == {"error": "Invalid API Key"}


@pytest.mark.parametrize("headers", [bearer(KEY), {"x-api-key": KEY}, cookie(KEY), cookie("sk-moeviz-secret%20")],
                         ids=["bearer", "x-api-key", "cookie", "cookie-percent-encoded"])
def test_every_guarded_surface_answers_with_the_key(server, headers):
    for method, path, body in guarded(server):
        status, answer, _ = call(server, path, headers=headers, method=method, raw=body)
        assert status == 200, (path, status, answer[:200])
    assert b"secret_function_name" in call(server, f"/api/runs/{server.run_id}", headers=headers)[1]
    assert b"secret_function_name" in call(server, f"/r/{server.run_id}", headers=headers)[1]


def test_health_models_and_the_page_stay_open(server):
    for path in ("/health", "/v1/models", "/", "/api/model", "/api/prompts", "/api/limits", "/static/js/apikey.js"):
        status, answer, _ = call(server, path)
        assert status == 200, path
        assert b"secret_function_name" not in answer
    assert json.loads(call(server, "/api/auth")[1]) == {"required": True, "ok": False}
    assert json.loads(call(server, "/api/auth", headers=cookie(KEY))[1]) == {"required": True, "ok": True}


def test_the_websocket_needs_the_key(server):
    ws_url = server.ws_url
    for headers in ({}, bearer("wrong"), cookie("wrong")):
        with connect(ws_url, additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "Invalid API Key"
    for headers in (bearer(KEY), {"x-api-key": KEY}, cookie(KEY)):
        with connect(ws_url, additional_headers=headers) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "model"
            ws.send(json.dumps({"type": "runs"}))
            listed = json.loads(ws.recv(timeout=10))
            assert listed["type"] == "runs" and any(r["run"] == server.run_id for r in listed["runs"])
    with connect(ws_url, additional_headers=cookie(KEY)) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "generate", "text": "hello", "max_tokens": 2}))
        while (m := json.loads(ws.recv(timeout=60)))["type"] not in ("done", "error"):
            pass
        assert m["type"] == "done"


def test_a_server_without_a_key_stays_open(tmp_path):
    with ServerProcess("--data-dir", tmp_path) as s:
        assert call(s, "/api/live")[0] == 200 and call(s, "/metrics")[0] == 200
        assert json.loads(call(s, "/api/auth")[1]) == {"required": False, "ok": True}


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_key_is_refused_at_start(key):
    r = run_cli("serve", "--api-key", key, "--port", "1")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["moeviz serve: error: --api-key must not be empty (leave it out to serve "
                                             "without a key)"]
