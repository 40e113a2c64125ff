"""Where the routing goes in an OpenAI-API answer (issue 23 item 6), on a real `moeviz
serve` (demo model): current SGLang's response-level `sglext.routed_experts` and, when
streaming, its chunk with `choices: []` (sglang/srt/entrypoints/openai/serving_chat.py);
the older per-choice `sgl_ext` beside it; vLLM's response-level `prompt_routed_experts`
and per-choice `routed_experts` with `routed_experts_format: "vllm"`. Each against the
run's stored .moetrace, exactly."""
import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from serverproc import ServerProcess

from moeviz.trace import load

MESSAGES = [{"role": "user", "content": "Write a haiku about the sea."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--n-ctx", "1024", "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def post(server, path, body):
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def trace_of(server, run, tmp_path):
    with urllib.request.urlopen(f"{server.url}/api/runs/{run}.moetrace", timeout=30) as r:
        (tmp_path / f"{run}.moetrace").write_bytes(r.read())
    return load(tmp_path / f"{run}.moetrace")


def ids_of(b64: str, layers_k) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), "<i4").reshape(-1, *layers_k)


def chat(**extra):
    return {"model": "m", "messages": MESSAGES, "max_tokens": 8, "temperature": 0, "return_routed_experts": True,
            **extra}


def test_sglang_response_level_sglext_beside_the_choices_sgl_ext(server, tmp_path):
    status, text = post(server, "/v1/chat/completions", chat())
    assert status == 200
    body = json.loads(text)
    choice = body["choices"][0]
    assert body["sglext"]["routed_experts"] == choice["sgl_ext"]["routed_experts"]
    trace = trace_of(server, choice["moeviz"]["run"], tmp_path)
    ids = ids_of(body["sglext"]["routed_experts"], trace.expert_ids.shape[1:])
    assert len(ids) == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] - 1
    assert np.array_equal(ids, trace.expert_ids[: len(ids)])
    status, text = post(server, "/v1/completions", {"model": "m", "prompt": "def f(x):", "max_tokens": 4,
                                                    "temperature": 0, "return_routed_experts": True})
    done = json.loads(text)
    assert done["sglext"]["routed_experts"] == done["choices"][0]["sgl_ext"]["routed_experts"]


def test_sglang_streams_routing_in_a_chunk_with_no_choices(server):
    whole = json.loads(post(server, "/v1/chat/completions", chat())[1])
    status, text = post(server, "/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True}))
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    finish = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"])
    routing, usage = chunks[finish + 1], chunks[finish + 2]
    assert routing["choices"] == [] and routing["object"] == "chat.completion.chunk" and "usage" not in routing
    assert routing["sglext"]["routed_experts"] == whole["sglext"]["routed_experts"]
    assert usage["choices"] == [] and "usage" in usage and finish + 3 == len(chunks)
    assert chunks[finish]["choices"][0]["sgl_ext"]["routed_experts"] == whole["sglext"]["routed_experts"]
    assert not any("sglext" in c for c in chunks if c is not routing)
    plain = [json.loads(line[6:]) for line in post(server, "/v1/chat/completions", {**chat(stream=True),
                                                                                  "return_routed_experts": False})[1]
             .splitlines() if line.startswith("data: {")]
    assert not any("sglext" in c or c["choices"] == [] for c in plain)


def test_vllm_prompt_routed_experts_and_per_choice_routed_experts(server, tmp_path):
    status, text = post(server, "/v1/chat/completions", chat(routed_experts_format="vllm"))
    assert status == 200
    body = json.loads(text)
    choice = body["choices"][0]
    assert "sglext" not in body and "sgl_ext" not in choice
    trace = trace_of(server, choice["moeviz"]["run"], tmp_path)
    n_prompt, n_gen = body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
    prompt_rows, gen_rows = np.array(body["prompt_routed_experts"]), np.array(choice["routed_experts"])
    assert prompt_rows.shape == (n_prompt, *trace.expert_ids.shape[1:])
    assert len(gen_rows) == n_gen - 1            # the last generated token had no forward pass (vLLM)
    assert np.array_equal(np.concatenate([prompt_rows, gen_rows]), trace.expert_ids[: n_prompt + n_gen - 1])
    streamed = [json.loads(line[6:]) for line in post(server, "/v1/chat/completions",
                                                      chat(routed_experts_format="vllm", stream=True))[1]
                .splitlines() if line.startswith("data: {")]
    last = streamed[-1]
    assert last["prompt_routed_experts"] == body["prompt_routed_experts"]
    assert last["choices"][0]["routed_experts"] == choice["routed_experts"]


def test_an_unknown_routing_format_is_a_400(server):
    status, text = post(server, "/v1/chat/completions", chat(routed_experts_format="tgi"))
    assert status == 400 and json.loads(text)["error"]["param"] == "routed_experts_format"
