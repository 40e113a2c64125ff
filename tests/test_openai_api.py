"""The OpenAI-compatible API (docs/openai-api.md), driven by the official `openai` client
against a real `moeviz serve` subprocess on loopback (the demo model)."""
import base64
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import run_cli
from serverproc import ServerProcess
from websockets.sync.client import connect

from moeviz.trace import load

openai = pytest.importorskip("openai")

KEY = "sk-test-moeviz"
PROMPT = "def fibonacci(n):"
M = "demo"          # any name: one model is served


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--n-ctx", "1024", "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def get_json(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def stored(server, choice_or_run):
    """The stored trace behind an answer's permalink (JSON form)."""
    run = choice_or_run if isinstance(choice_or_run, str) else choice_or_run.model_extra["moeviz"]["run"]
    return get_json(f"{server.url}/api/runs/{run}")


def decode(ext):
    ids = np.frombuffer(base64.b64decode(ext["sgl_ext"]["routed_experts"]), dtype="<i4")
    weights = np.frombuffer(base64.b64decode(ext["moeviz"]["weights"]), dtype="<f4")
    return ids, weights


def test_models(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["demo-moe.gguf"]
    assert get_json(server.url + "/v1/models")["data"][0] == {"id": "demo-moe.gguf", "object": "model",
                                                              "owned_by": "me", "permissions": []}


def test_completion_usage_max_tokens_and_seed(client):
    a = client.completions.create(model=M, prompt=PROMPT, max_tokens=12, temperature=0)
    b = client.completions.create(model=M, prompt=PROMPT, max_tokens=12, temperature=0)
    assert a.object == "text_completion" and a.id.startswith("cmpl-") and a.model == M
    assert a.choices[0].finish_reason == "length" and a.choices[0].text
    assert a.usage.completion_tokens == 12 and a.usage.prompt_tokens > 0
    assert a.usage.total_tokens == a.usage.prompt_tokens + 12
    assert a.choices[0].text == b.choices[0].text           # greedy: the same every time
    # a seed reproduces a sampled run; another seed (almost surely) does not
    runs = [client.completions.create(model=M, prompt=PROMPT, max_tokens=24, temperature=1.0, seed=s).choices[0].text
            for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert client.completions.create(model=M, prompt=PROMPT, max_tokens=0).usage.completion_tokens == 0


def test_streaming_completion_equals_the_whole_answer(client):
    whole = client.completions.create(model=M, prompt=PROMPT, max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=M, prompt=PROMPT, max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)


def test_stop_strings_end_the_answer_before_them(client):
    full = client.completions.create(model=M, prompt=PROMPT, max_tokens=24, temperature=0).choices[0].text
    stop = full.strip()[4:7]                      # three characters from inside the greedy answer
    assert stop and stop in full
    got = client.completions.create(model=M, prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop, "zzzz-never"])
    assert got.choices[0].finish_reason == "stop"
    assert got.choices[0].text == full[: full.index(stop)]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=M, prompt=PROMPT, max_tokens=24, temperature=0, stop=stop, stream=True) if c.choices)
    assert streamed == got.choices[0].text


def test_chat_uses_the_models_template(client, server):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sort a list."}]
    whole = client.chat.completions.create(model=M, messages=messages, max_tokens=10, temperature=0,
                                           extra_body={"return_routed_experts": True})
    msg = whole.choices[0].message
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert msg.role == "assistant" and msg.content and whole.usage.completion_tokens <= 10
    trace = stored(server, whole.choices[0])
    assert trace["prompt"] == messages
    prompt_text = "".join(t["text"] for t in trace["tokens"] if t["prompt"])
    assert prompt_text.startswith("<|im_start|>system\nYou write Python.<|im_end|>")
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert whole.usage.prompt_tokens == sum(t["prompt"] for t in trace["tokens"])

    chunks = list(client.chat.completions.create(model=M, messages=messages, max_tokens=10, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == msg.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def _check_routing(server, choice, n_prompt_field, usage, start=0):
    ext = choice.model_extra
    trace = stored(server, ext["moeviz"]["run"])
    assert ext["moeviz"]["permalink"] == f"{server.url}/r/{ext['moeviz']['run']}"
    L, k = len(trace["model"]["moe_layers"]), trace["model"]["n_expert_used"]
    ids, weights = decode(ext)
    eos = trace["finish"]["reason"] == "eos"
    seqlen = usage.prompt_tokens + usage.completion_tokens + (1 if eos else 0)
    want = np.asarray(trace["routing"]["expert_ids"], np.int32)[start:seqlen - 1]
    assert ids.reshape(-1, L, k).shape == want.shape == tuple(ext["moeviz"]["shape"])
    assert np.array_equal(ids.reshape(-1, L, k), want)
    assert ext["moeviz"]["moe_layers"] == trace["model"]["moe_layers"]
    assert ext["moeviz"]["routed_experts_start_len"] == start
    return ids.reshape(-1, L, k), weights.reshape(-1, L, k), trace


def test_routed_experts_are_the_stored_traces_exactly(client, server, tmp_path):
    got = client.completions.create(model=M, prompt=PROMPT, max_tokens=10, temperature=0,
                                    extra_body={"return_routed_experts": True})
    ids, weights, trace = _check_routing(server, got.choices[0], "prompt", got.usage)
    assert len(ids) == got.usage.prompt_tokens + 10 - 1       # the last token was never fed back (SGLang)
    # the permalink keeps exact float32 weights: the binary form has them bit for bit
    with urllib.request.urlopen(f"{server.url}/api/runs/{trace_run(got)}.moetrace", timeout=30) as r:
        (tmp_path / "t.moetrace").write_bytes(r.read())
    exact = load(tmp_path / "t.moetrace")
    assert np.array_equal(weights, exact.weights[: len(ids)])
    assert np.array_equal(ids, exact.expert_ids[: len(ids)])
    # `moeviz record` on the same prompt at temperature 0 routes the same
    run_cli("record", "--prompt", PROMPT, "--max-tokens", "10", "--temperature", "0", "--n-ctx", "1024",
            "--out", tmp_path / "r.json",
            check=True)
    rec = load(tmp_path / "r.json")
    assert np.array_equal(ids, rec.expert_ids[: len(ids)])
    assert "".join(t["text"] for t in rec.tokens if not t["prompt"]) == got.choices[0].text

    # from the end of the prompt: only the generated tokens' rows (SGLang's routed_experts_start_len)
    n = got.usage.prompt_tokens
    tail = client.completions.create(model=M, prompt=PROMPT, max_tokens=10, temperature=0,
                                     extra_body={"return_routed_experts": True, "routed_experts_start_len": n})
    tail_ids, _, _ = _check_routing(server, tail.choices[0], "prompt", tail.usage, start=n)
    assert np.array_equal(tail_ids, ids[n:])


def trace_run(resp):
    return resp.choices[0].model_extra["moeviz"]["run"]


def test_routed_experts_when_streaming(client, server):
    chunks = list(client.chat.completions.create(
        model=M, messages=[{"role": "user", "content": "Write a haiku."}], max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"return_routed_experts": True}))
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert all("sgl_ext" not in (c.choices[0].model_extra or {}) for c in chunks if c.choices and c is not final)
    _check_routing(server, final.choices[0], "messages", chunks[-1].usage)
    # without asking, no routing in the answer
    plain = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "sgl_ext" not in plain.choices[0].model_extra and "moeviz" not in plain.choices[0].model_extra


@pytest.mark.parametrize("kwargs, param", [
    ({"n": 0}, "n"),
    ({"temperature": 11}, "temperature"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
    ({"extra_body": {"grammar": "root ::= ("}}, "grammar"),
    ({"extra_body": {"min_p": 1.5}}, "min_p"),
    ({"logit_bias": {"x": 300}}, "logit_bias"),
    ({"logprobs": 50}, "logprobs"),
    ({"extra_body": {"routed_experts_start_len": 999}}, "routed_experts_start_len"),
])
def test_bad_requests_get_openai_errors(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=M, prompt=PROMPT, **kwargs)
    err = e.value.body
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["code"] is None
    assert "\n" not in err["message"] and err["message"]
    if param == "grammar":      # the server reads llama.cpp's reason and position from its log
        assert err["message"] == "'grammar' is not valid GBNF: expecting ')' at line 1, column 11 (the end)"


def test_bad_bodies_and_paths(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=M, messages=[], max_tokens=2)
    assert e.value.body["param"] == "messages"
    req = urllib.request.Request(server.url + "/v1/completions", data=b"{not json", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model=M, input="x")
    assert e.value.body["type"] == "not_found_error"


def test_api_key_and_no_api(tmp_path):
    with ServerProcess("--api-key", KEY, "--data-dir", tmp_path / "a") as s:
        with openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as e:
                bad.completions.create(model=M, prompt="x", max_tokens=1)
            assert e.value.status_code == 401 and e.value.body["type"] == "authentication_error"
            assert [m.id for m in bad.models.list().data] == ["demo-moe.gguf"]     # public, as in llama.cpp
        with openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0) as good:
            assert good.completions.create(model=M, prompt="x", max_tokens=2).usage.completion_tokens <= 2
    with ServerProcess("--no-api", "--data-dir", tmp_path / "b") as s:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(s.url + "/v1/models", timeout=10)
        assert e.value.code == 404


def test_api_runs_are_live_and_watchable(client, server):
    """Every API request is a run: listed live, watchable token by token from a page's
    websocket, then behind its permalink."""
    result = {}

    def long_run():
        result["r"] = client.completions.create(model=M, prompt="Once upon a time", max_tokens=300, temperature=0,
                                                extra_body={"return_routed_experts": True})

    with connect(server.ws_url) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "model"
        ws.send(json.dumps({"type": "runs"}))
        t = threading.Thread(target=long_run)
        t.start()
        run = None
        while run is None:
            msg = json.loads(ws.recv(timeout=60))
            assert msg["type"] == "runs"
            live = [r for r in msg["runs"] if r["source"] == "api" and r["status"] in ("queued", "running")]
            run = live[0]["run"] if live else None
        assert live[0]["title"] == "Once upon a time"
        ws.send(json.dumps({"type": "watch", "run": run}))
        msgs = []
        while not msgs or msgs[-1]["type"] != "done":
            m = json.loads(ws.recv(timeout=120))
            if m["type"] != "runs":
                msgs.append(m)
        t.join(timeout=120)
    assert msgs[0] == {"type": "watching", "run": run}
    assert msgs[1]["type"] == "start" and msgs[1]["run"] == run and msgs[2]["type"] == "prompt"
    tokens = [m for m in msgs if m["type"] == "token"]
    assert len(tokens) == result["r"].usage.completion_tokens
    watched = msgs[2]["expert_ids"] + [m["expert_ids"] for m in tokens]
    trace = stored(server, run)
    assert watched == trace["routing"]["expert_ids"]
    assert msgs[-1]["permalink"] == f"/r/{run}"
    listed = get_json(server.url + "/api/live")["runs"]
    assert {"run": run, "status": "done", "permalink": f"/r/{run}"}.items() <= next(
        r for r in listed if r["run"] == run).items()


def test_watching_unknown_or_finished_runs_is_an_error(server, client):
    done = client.completions.create(model=M, prompt="x", max_tokens=1)
    run = next(r for r in get_json(server.url + "/api/live")["runs"] if r["status"] == "done")["run"]
    assert done.usage.completion_tokens <= 1
    with connect(server.ws_url) as ws:
        ws.recv(timeout=30)
        ws.send(json.dumps({"type": "watch", "run": "nope"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "error"
        ws.send(json.dumps({"type": "watch", "run": run}))
        err = json.loads(ws.recv(timeout=30))
        assert err["type"] == "error" and f"/r/{run}" in err["message"]


def test_public_mode_hides_api_runs_unless_shown(tmp_path):
    for flags, shown in (((), False), (("--show-api-runs",), True)):
        with ServerProcess("--public", *flags, "--no-store-api", "--data-dir", tmp_path / str(shown)) as s:
            with openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c:
                r = c.completions.create(model=M, prompt="a secret prompt", max_tokens=2,
                                         extra_body={"return_routed_experts": True})
            assert r.choices[0].model_extra["moeviz"]["permalink"] is None        # --no-store-api
            runs = get_json(s.url + "/api/live")["runs"]
            assert bool(runs) == shown
            assert all(x["permalink"] is None for x in runs)
            with connect(s.url.replace("http", "ws") + "/ws") as ws:
                ws.recv(timeout=30)
                ws.send(json.dumps({"type": "runs"}))
                listed = json.loads(ws.recv(timeout=30))["runs"]
            assert [x["title"] for x in listed] == (["a secret prompt"] if shown else [])


def test_the_readme_examples_work_as_written(server):
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### The OpenAI-compatible API"):]
    section = section[: section.index("\n### ", 5)]
    curl = re.search(r"```sh\n(.*?)```", section, re.S).group(1).replace("8000", str(server.port))
    py = re.search(r"```python\n(.*?)```", section, re.S).group(1).replace("8000", str(server.port))
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["choices"][0]["message"]["content"]
    out = subprocess.run([sys.executable, "-c", py], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{server.url}/r/" in out.stdout and "(" in out.stdout


def test_logprobs_are_the_models_log_softmax(client, server):
    """logprobs / top_logprobs against an independent float64 forward pass of the demo
    model (tests/reference_llama.py): log-softmax of its logits at each step."""
    from reference_llama import forward

    from moeviz.demo import default_model_path

    got = client.completions.create(model=M, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3,
                                    extra_body={"return_routed_experts": True})
    lp = got.choices[0].logprobs
    trace = stored(server, got.choices[0])
    ids = [t["id"] for t in trace["tokens"]]
    n_prompt = got.usage.prompt_tokens
    logits = forward(default_model_path(), ids)[3]
    ref = logits - logits.max(-1, keepdims=True)
    ref = ref - np.log(np.exp(ref).sum(-1, keepdims=True))
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == got.choices[0].text
    assert lp.text_offset[0] == len(PROMPT)
    for j in range(6):
        row = ref[n_prompt - 1 + j]
        token = ids[n_prompt + j]
        assert int(np.argmax(row)) == token                          # greedy
        assert lp.token_logprobs[j] == pytest.approx(row[token], abs=2e-3)
        top = np.argsort(-row)[:3]
        assert sorted(lp.top_logprobs[j].values(), reverse=True) == pytest.approx(list(row[top]), abs=2e-3)

    chat = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                          temperature=0.9, seed=3, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert "".join(c.token for c in content) == chat.choices[0].message.content
    assert all(len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob for c in content)
    assert all(c.logprob <= c.top_logprobs[0].logprob + 1e-9 and bytes(c.bytes).decode("utf-8", "ignore") == c.token
               for c in content)
    streamed = [c for c in client.chat.completions.create(
        model=M, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0.9, seed=3,
        logprobs=True, top_logprobs=2, stream=True) if c.choices and c.choices[0].logprobs]
    assert [t.logprob for c in streamed for t in c.choices[0].logprobs.content] == [c.logprob for c in content]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=M, prompt=PROMPT, max_tokens=2, temperature=0.5, logprobs=1,
                                  extra_body={"top_k": 0})
    assert e.value.body["param"] == "top_k"


def test_a_run_the_model_ends_has_a_row_for_its_last_token(client, server):
    """Ended by the end-of-generation token: seqlen counts that token, so every
    generated token has its row (SGLang's [0, seqlen - 1))."""
    # the end of a script: the demo model ends the document there (greedy: a newline, then end-of-text)
    got = client.completions.create(model=M, prompt='if __name__ == "__main__":\n    main()', max_tokens=1000, temperature=0,
                                    extra_body={"return_routed_experts": True})
    assert got.choices[0].finish_reason == "stop" and got.usage.completion_tokens < 1000
    ids, _, trace = _check_routing(server, got.choices[0], "prompt", got.usage)
    assert trace["finish"]["reason"] == "eos"
    assert len(ids) == got.usage.prompt_tokens + got.usage.completion_tokens == len(trace["tokens"])


def test_public_mode_rate_limit_is_a_429(tmp_path):
    with ServerProcess("--public", "--data-dir", tmp_path) as s:
        with openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c:
            for _ in range(12):
                c.completions.create(model=M, prompt="x", max_tokens=1)
            with pytest.raises(openai.RateLimitError) as e:
                c.completions.create(model=M, prompt="x", max_tokens=1)
            assert e.value.body["type"] == "rate_limit_error" and "rate limit" in e.value.body["message"]
            with pytest.raises(openai.BadRequestError) as e:
                c.completions.create(model=M, prompt="x", max_tokens=300)         # public cap: 256
            assert e.value.body["param"] == "max_tokens"


def test_a_stream_whose_client_leaves_is_cancelled(server):
    import time

    import httpx

    with httpx.Client(timeout=30) as c:
        with c.stream("POST", server.url + "/v1/completions", json={
                "model": M, "prompt": "Once upon a time", "max_tokens": 1000, "temperature": 0, "stream": True}) as r:
            run = r.headers["x-moeviz-run"]
            for i, _line in enumerate(r.iter_lines()):
                if i > 4:
                    break
    for _ in range(100):
        entry = next(x for x in get_json(server.url + "/api/live")["runs"] if x["run"] == run)
        if entry["status"] != "running":
            break
        time.sleep(0.05)
    assert entry["status"] == "cancelled"
    assert stored(server, run)["finish"]["n_generated"] < 1000
