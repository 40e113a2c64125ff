"""Anthropic's Messages API (the official anthropic SDK), OpenAI's Responses API (the
openai SDK) and llama-server's extras (/tokenize, /detokenize, /apply-template, /props,
/slots) against a real `moeviz serve` on the demo model; CORS for --allowed-origins.
Each answer is checked against the same request through /v1/chat/completions (one
template path, one run path) and each run against its stored trace."""
import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from serverproc import ServerProcess

from moeviz.trace import load

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

SYSTEM = "You write Python."
ASK = "def fibonacci(n):"
T0 = {"temperature": 0}     # this anthropic SDK (2.x) has no temperature argument: sent as an extra field
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--n-ctx", "1024", "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


@pytest.fixture(scope="module")
def claude(server):
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def http(server, path, body=None, method=None, headers=None):
    req = urllib.request.Request(server.url + path, data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, _json(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), e.headers


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw          # a preflight's plain-text answer


def chat_text(oai, messages, max_tokens):
    return oai.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens,
                                       temperature=0).choices[0].message.content


def stored(server, run):
    return http(server, f"/api/runs/{run}")[1]


# Anthropic ------------------------------------------------------------------------------
def test_messages_answer_as_the_chat_api_does(claude, oai, server):
    msg = claude.messages.create(model="m", max_tokens=12, system=SYSTEM, extra_body=T0,
                                 messages=[{"role": "user", "content": ASK}])
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == chat_text(oai, [{"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": ASK}], 12)
    assert msg.stop_reason in ("max_tokens", "end_turn") and msg.usage.output_tokens <= 12
    count = claude.messages.count_tokens(model="m", system=SYSTEM, messages=[{"role": "user", "content": ASK}])
    assert count.input_tokens == msg.usage.input_tokens > 0
    # every request is a run: listed live, stored behind its permalink
    ext = msg.model_extra["moeviz"]
    assert ext["permalink"].endswith("/r/" + ext["run"])
    trace = stored(server, ext["run"])
    assert trace["prompt"][0] == {"role": "system", "content": SYSTEM}
    assert any(r["run"] == ext["run"] and r["source"] == "api" for r in http(server, "/api/live")[1]["runs"])


def test_messages_stream_events_in_anthropics_order(claude):
    kwargs = dict(model="m", max_tokens=10, extra_body=T0, messages=[{"role": "user", "content": ASK}])
    whole = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens
    events = [e.type for e in claude.messages.create(stream=True, **kwargs)]
    assert events[:2] == ["message_start", "content_block_start"] and events[-3:] == [
        "content_block_stop", "message_delta", "message_stop"]
    assert set(events[2:-3]) == {"content_block_delta"}


def test_messages_tools_tool_use_and_tool_result(claude, server):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced = dict(model="m", max_tokens=200, extra_body=T0, tools=[WEATHER],
                  tool_choice={"type": "tool", "name": "get_weather"})
    msg = claude.messages.create(messages=ask, **forced)
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert msg.stop_reason == "tool_use" and len(uses) == 1
    assert uses[0].name == "get_weather" and isinstance(uses[0].input["city"], str)
    with claude.messages.stream(messages=ask, **forced) as stream:
        streamed = stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in streamed.content if b.type == "tool_use"] == [
        ("tool_use", "get_weather", uses[0].input)]
    # the call and its result go back through the model's template (none dropped)
    history = ask + [{"role": "assistant", "content": [u.model_dump() for u in uses]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                   "content": "Sunny, 21 C"}]}]
    answer = claude.messages.create(model="m", max_tokens=8, extra_body=T0, tools=[WEATHER], messages=history)
    prompt = stored(server, answer.model_extra["moeviz"]["run"])["prompt"]
    assert {"role": "tool", "tool_call_id": uses[0].id, "content": "Sunny, 21 C"} in prompt
    assert prompt[1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_messages_bad_requests_are_anthropic_errors(claude, server):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="m", max_tokens=4, messages=[])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    status, body, _ = http(server, "/v1/messages", {"model": "m", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": [{"type": "image"}]}]})
    assert status == 400 and "only text, thinking, tool_use and tool_result blocks" in body["error"]["message"]


def test_messages_routing_on_request_is_the_stored_trace(claude, server, tmp_path):
    msg = claude.messages.create(model="m", max_tokens=6, messages=[{"role": "user", "content": ASK}],
                                 extra_body={**T0, "return_routed_experts": True})
    ext = msg.model_extra["moeviz"]
    ids = np.frombuffer(base64.b64decode(ext["routed_experts"]), "<i4").reshape(ext["shape"])
    weights = np.frombuffer(base64.b64decode(ext["weights"]), "<f4").reshape(ext["shape"])
    assert len(ids) == msg.usage.input_tokens + msg.usage.output_tokens - 1     # SGLang's rows
    with urllib.request.urlopen(f"{server.url}/api/runs/{ext['run']}.moetrace", timeout=30) as r:
        (tmp_path / "t.moetrace").write_bytes(r.read())
    exact = load(tmp_path / "t.moetrace")
    assert np.array_equal(ids, exact.expert_ids[: len(ids)]) and np.array_equal(weights, exact.weights[: len(ids)])


# Responses ------------------------------------------------------------------------------
def test_responses_text_input_stream_and_items(oai, server):
    resp = oai.responses.create(model="m", instructions=SYSTEM, input=ASK, max_output_tokens=12, temperature=0)
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.output_text == chat_text(oai, [{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": ASK}], 12)
    assert resp.status in ("completed", "incomplete") and resp.usage.output_tokens <= 12
    items = oai.responses.create(model="m", instructions=SYSTEM, max_output_tokens=12, temperature=0,
                                 input=[{"role": "user", "content": [{"type": "input_text", "text": ASK}]}])
    assert items.output_text == resp.output_text
    with oai.responses.stream(model="m", instructions=SYSTEM, input=ASK, max_output_tokens=12, temperature=0) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert final.output_text == resp.output_text
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert stored(server, resp.model_extra["moeviz"]["run"])["prompt"][1] == {"role": "user", "content": ASK}


def test_responses_function_tools_round_trip(oai, server):
    tool = {"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": WEATHER["input_schema"]}
    kwargs = dict(model="m", input="What is the weather in Paris?", tools=[tool], max_output_tokens=200,
                  temperature=0, tool_choice={"type": "function", "name": "get_weather"})
    resp = oai.responses.create(**kwargs)
    calls = [o for o in resp.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and "city" in json.loads(calls[0].arguments)
    with oai.responses.stream(**kwargs) as s:
        final = s.get_final_response()
    assert [(o.name, o.arguments) for o in final.output if o.type == "function_call"] == [
        (calls[0].name, calls[0].arguments)]
    back = oai.responses.create(model="m", max_output_tokens=6, temperature=0, tools=[tool], input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}])
    prompt = stored(server, back.model_extra["moeviz"]["run"])["prompt"]
    assert {"role": "tool", "tool_call_id": calls[0].call_id, "content": "Sunny, 21 C"} in prompt


def test_responses_bad_input_is_an_openai_error(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="m", input=[{"type": "computer_call"}])
    assert "not supported" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="m", input="x", previous_response_id="resp_1")


# llama-server's extras ------------------------------------------------------------------
def test_tokenize_detokenize_apply_template(server, oai):
    text = "def fibonacci(n):\n    return n"
    status, tok, _ = http(server, "/tokenize", {"content": text})
    assert status == 200 and all(isinstance(t, int) for t in tok["tokens"])
    assert http(server, "/detokenize", {"tokens": tok["tokens"]})[1] == {"content": text}
    pieces = http(server, "/tokenize", {"content": text, "with_pieces": True})[1]["tokens"]
    assert [p["id"] for p in pieces] == tok["tokens"] and "".join(p["piece"] for p in pieces) == text
    status, bad, _ = http(server, "/detokenize", {"tokens": [10 ** 9]})
    assert status == 400 and "outside the vocabulary" in bad["error"]["message"]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}]
    prompt = http(server, "/apply-template", {"messages": messages})[1]["prompt"]
    assert SYSTEM in prompt and ASK in prompt
    n_prompt = oai.chat.completions.create(model="m", messages=messages, max_tokens=1).usage.prompt_tokens
    assert len(http(server, "/tokenize", {"content": prompt, "add_special": True})[1]["tokens"]) == n_prompt


def test_props_and_slots_per_parallel_slot(server, tmp_path):
    props = http(server, "/props")[1]
    assert props["default_generation_settings"]["n_ctx"] == 1024 and props["total_slots"] == 1
    assert props["chat_template"] and http(server, "/slots")[1][0]["n_ctx"] == 1024
    with ServerProcess("--n-ctx", "1024", "--parallel", "2", "--data-dir", tmp_path) as s:
        props = http(s, "/props")[1]
        assert props["total_slots"] == 2 and props["default_generation_settings"]["n_ctx"] == 512
        slots = http(s, "/slots")[1]
        assert [x["id"] for x in slots] == [0, 1] and not any(x["is_processing"] for x in slots)


# CORS -----------------------------------------------------------------------------------
def test_cors_only_for_the_origins_given(server, tmp_path):
    pre = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    status, _, headers = http(server, "/v1/chat/completions", method="OPTIONS", headers=pre)
    assert status == 405 and "access-control-allow-origin" not in headers       # none by default
    with ServerProcess("--allowed-origins", "http://localhost:5173,https://chat.example.com",
                       "--data-dir", tmp_path) as s:
        status, _, headers = http(s, "/v1/chat/completions", method="OPTIONS", headers=pre)
        assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "authorization" in headers["access-control-allow-headers"].lower()
        status, _, headers = http(s, "/v1/chat/completions", method="OPTIONS",
                                  headers={**pre, "Origin": "http://evil.example"})
        assert status == 400 and "access-control-allow-origin" not in headers
        status, body, headers = http(s, "/v1/messages", {"model": "m", "max_tokens": 2,
                                                         "messages": [{"role": "user", "content": "hi"}]},
                                     headers={"Origin": "https://chat.example.com"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://chat.example.com"
        assert "X-Moeviz-Run" in headers["access-control-expose-headers"]


def test_allowed_origins_must_be_origins(tmp_path):
    from conftest import run_cli
    r = run_cli("serve", "--allowed-origins", "*", "--port", "1")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "moeviz serve: error: --allowed-origins: '*' is not an origin such as http://localhost:5173 "
        "(scheme://host[:port], no path, no '*')"]
