"""serve's run-setting flags (serve --temperature 0 --max-tokens 5 ...) are the defaults of
every request that leaves a setting out, as llama-server's sampling flags are: on the
websocket, the OpenAI and Anthropic APIs, and as the page's defaults (/api/settings);
a request's own value wins. Real server on loopback, the demo model."""
import json
import urllib.request

import pytest
from conftest import run_cli
from serverproc import ServerProcess
from websockets.sync.client import connect

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

DEFAULTS = ["--temperature", "0", "--top-k", "7", "--min-p", "0.2", "--max-tokens", "5", "--seed", "11",
            "--repeat-penalty", "1.3"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--n-ctx", "512", "--data-dir", tmp_path_factory.mktemp("runs"), *DEFAULTS) as s:
        yield s


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def stored_settings(server, run_id):
    return get_json(f"{server.url}/api/runs/{run_id}")["settings"]


def test_the_page_is_given_the_servers_defaults(server):
    table = {s["name"]: s["default"] for s in get_json(server.url + "/api/settings")["settings"]}
    assert (table["temperature"], table["top_k"], table["min_p"], table["max_tokens"], table["seed"],
            table["repeat_penalty"]) == (0, 7, 0.2, 5, 11, 1.3)
    assert table["top_p"] == 0.95          # not given to serve: the table's own


def test_api_requests_take_the_defaults_they_leave_out(server):
    def settings_of(raw):
        return stored_settings(server, raw.headers["x-moeviz-run"]), raw.parse()

    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        s, r = settings_of(c.completions.with_raw_response.create(model="demo", prompt="def fib(n):"))
        assert (s["temperature"], s["top_k"], s["min_p"], s["max_tokens"], s["seed"], s["repeat_penalty"]) == \
            (0, 7, 0.2, 5, 11, 1.3)
        assert r.usage.completion_tokens <= 5
        # the request's own values win
        s, _ = settings_of(c.completions.with_raw_response.create(model="demo", prompt="def fib(n):", max_tokens=3,
                                                                  temperature=0.7, seed=2))
        assert (s["temperature"], s["max_tokens"], s["seed"], s["top_k"]) == (0.7, 3, 2, 7)
        s, r = settings_of(c.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}]))
        assert r.usage.completion_tokens <= 5 and s["max_tokens"] == 5
    a = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    raw = a.messages.with_raw_response.create(model="demo", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    s = stored_settings(server, raw.headers["x-moeviz-run"])
    assert s["temperature"] == 0 and s["top_k"] == 7 and s["max_tokens"] == 4


def test_websocket_runs_take_the_defaults(server):
    with connect(server.ws_url, open_timeout=30) as ws:
        json.loads(ws.recv(timeout=30))                          # the model message
        ws.send(json.dumps({"type": "generate", "text": "def fib(n):"}))
        while (m := json.loads(ws.recv(timeout=120)))["type"] not in ("done", "error"):
            pass
    assert m["type"] == "done", m
    s = stored_settings(server, m["permalink"].rstrip("/").rsplit("/", 1)[-1])
    assert (s["temperature"], s["max_tokens"], s["seed"], s["top_k"]) == (0, 5, 11, 7)


@pytest.mark.parametrize("args, words", [
    (["--max-tokens", "5000", "--public"], "--max-tokens 5000 is over this server's limit of"),
    (["--max-tokens", "50", "--max-tokens-limit", "20"], "--max-tokens 50 is over this server's limit of 20"),
    (["--temperature", "-1"], "temperature"),
    (["--top-p", "2"], "top_p"),
])
def test_bad_defaults_are_one_line_at_start(args, words):
    r = run_cli("serve", "--port", "1", *args, timeout=60)
    assert r.returncode in (1, 2)
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and words.replace("_", "-") in line.replace("_", "-"), line
