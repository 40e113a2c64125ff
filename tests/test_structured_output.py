"""llama-server's sampling fields, structured output and limits through the OpenAI API:
the official `openai` client against a real `moeviz serve` (demo model) on loopback."""
import base64
import json
import re
from typing import Literal

import numpy as np
import pytest
from serverproc import ServerProcess

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")

N_CTX = 256
M = "demo"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--n-ctx", str(N_CTX), "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def stored(server, run_id):
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/api/runs/{run_id}", timeout=30) as r:
        return json.loads(r.read())


class Verdict(pydantic.BaseModel):
    answer: Literal["yes", "no"]
    count: int


def test_parse_returns_the_pydantic_object(client):
    """client.chat.completions.parse sends response_format json_schema (strict): the
    grammar makes even the demo model's answer parse."""
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    done = parse(model=M, messages=[{"role": "user", "content": "Is 7 prime? Count its divisors."}],
                 response_format=Verdict, temperature=0)
    verdict = done.choices[0].message.parsed
    assert isinstance(verdict, Verdict) and done.choices[0].finish_reason == "stop"
    assert Verdict.model_validate_json(done.choices[0].message.content) == verdict


def test_json_object_and_grammar_streams_with_routing(client, server):
    chunks = list(client.completions.create(
        model=M, prompt="numbers = ", max_tokens=40, temperature=0.9, seed=5, stream=True,
        extra_body={"grammar": 'root ::= "[" [0-9]+ ("," " "? [0-9]+)* "]"', "return_routed_experts": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert re.fullmatch(r"\[[0-9]+(, ?[0-9]+)*\]", text), text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0].choices[0]
    ext = final.model_extra
    ids = np.frombuffer(base64.b64decode(ext["sgl_ext"]["routed_experts"]), dtype="<i4")
    trace = stored(server, ext["moeviz"]["run"])
    n_prompt = sum(t["prompt"] for t in trace["tokens"])
    n_gen = len(trace["tokens"]) - n_prompt
    # routing rows for every token fed through the model: the grammar changes nothing there
    assert ids.size == (n_prompt + n_gen + (final.finish_reason == "stop") - 1) * ext["moeviz"]["shape"][1] * \
        ext["moeviz"]["shape"][2] and trace["settings"]["grammar"].startswith("root ::=")


def test_sampling_fields_are_recorded(client, server):
    r = client.completions.create(model=M, prompt="def f(x):", max_tokens=6, temperature=0.7, seed=3,
                                  presence_penalty=0.5, frequency_penalty=0.25, logit_bias={"10": -100},
                                  extra_body={"min_p": 0.1, "typical_p": 0.9, "repeat_penalty": 1.1,
                                              "repeat_last_n": 32, "top_k": 20, "return_routed_experts": True})
    s = stored(server, r.choices[0].model_extra["moeviz"]["run"])["settings"]
    assert {k: s[k] for k in ("min_p", "typical_p", "repeat_penalty", "repeat_last_n", "presence_penalty",
                              "frequency_penalty", "top_k", "seed", "logit_bias")} == {
        "min_p": 0.1, "typical_p": 0.9, "repeat_penalty": 1.1, "repeat_last_n": 32, "presence_penalty": 0.5,
        "frequency_penalty": 0.25, "top_k": 20, "seed": 3, "logit_bias": [[10, -100.0]]}


def test_echo_and_max_tokens_clamped_to_the_context(client):
    r = client.completions.create(model=M, prompt="def f(x):", max_tokens=3, temperature=0, echo=True)
    assert r.choices[0].text.startswith("def f(x):") and len(r.choices[0].text) > len("def f(x):")
    # no max_tokens, or more than the context holds: what is left of it, finish_reason "length"
    for kw in ({}, {"max_tokens": 100_000}):
        r = client.completions.create(model=M, prompt="Once upon a time", temperature=0,
                                      logit_bias={str(t): -100 for t in range(0, 3)}, **kw)
        if r.choices[0].finish_reason == "length":
            assert r.usage.prompt_tokens + r.usage.completion_tokens == N_CTX
        else:
            assert r.usage.prompt_tokens + r.usage.completion_tokens < N_CTX


@pytest.mark.parametrize("kwargs, param", [
    ({"extra_body": {"grammar": 'root ::= ('}}, "grammar"),
    ({"extra_body": {"grammar": 'root ::= root "x"'}}, "grammar"),
    ({"extra_body": {"grammar": "root ::= " + "(" * 300 + '"a"' + ")" * 300}}, "grammar"),
    ({"extra_body": {"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                                                                                "schema": {"$ref": "#/nope"}}}}},
     "response_format"),
    ({"extra_body": {"response_format": {"type": "xml"}}}, "response_format"),
    ({"extra_body": {"response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'}}, "response_format"),
    ({"echo": True, "logprobs": 2}, "echo"),
    ({"extra_body": {"typical_p": 2}}, "typical_p"),
    ({"logit_bias": {"99999": 5}}, "logit_bias"),
])
def test_bad_structured_requests_are_one_line_400s(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=M, prompt="x", max_tokens=2, **kwargs)
    assert e.value.body["param"] == param and "\n" not in e.value.body["message"]
    assert client.completions.create(model=M, prompt="x", max_tokens=1).usage.completion_tokens <= 1  # still up


def test_prompt_refused_only_when_it_does_not_fit(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=M, prompt="word " * (2 * N_CTX), max_tokens=1)
    assert "context" in e.value.body["message"]
    r = client.completions.create(model=M, prompt="word " * (N_CTX // 2), max_tokens=1)
    assert r.usage.prompt_tokens > N_CTX // 4


def test_n_choices_are_runs_with_their_own_seeds(client, server):
    r = client.completions.create(model=M, prompt="def f(x):", max_tokens=8, temperature=1.0, seed=40, n=3,
                                  extra_body={"return_routed_experts": True})
    assert [c.index for c in r.choices] == [0, 1, 2] and r.usage.completion_tokens == sum(
        len(stored(server, c.model_extra["moeviz"]["run"])["tokens"]) - r.usage.prompt_tokens for c in r.choices)
    seeds = [stored(server, c.model_extra["moeviz"]["run"])["settings"]["seed"] for c in r.choices]
    assert seeds == [40, 41, 42]
    # each choice is the run its seed gives alone
    for c, seed in zip(r.choices, seeds):
        alone = client.completions.create(model=M, prompt="def f(x):", max_tokens=8, temperature=1.0, seed=seed)
        assert alone.choices[0].text == c.text
    chunks = list(client.chat.completions.create(model=M, messages=[{"role": "user", "content": "hi"}], n=2,
                                                 max_tokens=5, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    texts = {0: "", 1: ""}
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] += c.delta.content or ""
    one = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                         temperature=0)
    assert texts[0] == texts[1] == one.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 2 * one.usage.completion_tokens
    assert sum(1 for ch in chunks for c in ch.choices if c.finish_reason) == 2
