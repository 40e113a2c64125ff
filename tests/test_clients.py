"""Real clients against a real `moeviz serve` (tests/serverproc.py): the official `openai`
SDK (tools, streamed tool calls, structured outputs .parse), langchain-openai (bind_tools
and a tool-calling loop with LangChain's own tool execution, with_structured_output) and
litellm (completion with tools).

Tool-call parsing runs on a scripted fixture (moeviz/fixtures/scripted.py) with Qwen3's
real chat template: its greedy decoding thinks, then calls get_weather; after a tool
result it thinks and answers. Forced calls (tool_choice required / a named function)
run on the demo model, whose template knows no tools: the grammar alone makes its
answer a valid call.
"""
import json
import urllib.request

import pytest
from serverproc import ServerProcess
from test_chat_templates import NO_SDIST, TEMPLATES

from moeviz.fixtures.scripted import ScriptedSpec, write_scripted_fixture

openai = pytest.importorskip("openai")

THINK = "The user asks about the weather in Paris. I will call the tool."
CALL_ARGS = {"city": "Paris", "unit": "celsius"}
SCRIPT_CALL = ("<think>\n" + THINK + "\n</think>\n\n<tool_call>\n"
               '{"name": "get_weather", "arguments": ' + json.dumps(CALL_ARGS) + "}\n</tool_call>")
THINK2 = "The tool answered: 18 degrees and sunny."
ANSWER = "It is 18 °C and sunny in Paris."
SCRIPT_ANSWER = "<think>\n" + THINK2 + "\n</think>\n\n" + ANSWER
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
USER = {"role": "user", "content": "What is the weather in Paris?"}
M = "any"


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    if not TEMPLATES:
        pytest.skip("the llama-cpp-python sdist (Qwen3's template) is not cached: run `make setup`")
    d = tmp_path_factory.mktemp("scripted")
    path = write_scripted_fixture(d / "scripted.gguf", ScriptedSpec(
        scripts=(SCRIPT_CALL, SCRIPT_ANSWER), chat_template=TEMPLATES["Qwen-Qwen3-0.6B.jinja"]))
    with ServerProcess("--model", path, "--n-ctx", "4096", "--data-dir", d / "runs") as s:
        yield s


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with ServerProcess("--n-ctx", "2048", "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def client_of(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@NO_SDIST
def test_a_tool_call_with_reasoning(scripted):
    with client_of(scripted) as c:
        r = c.chat.completions.create(model=M, messages=[USER], tools=[WEATHER], temperature=0,
                                      extra_body={"return_routed_experts": True})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    msg = choice.message
    assert msg.content is None and msg.model_extra["reasoning_content"] == THINK
    [call] = msg.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == CALL_ARGS
    # the run is a run like any other: stored, its prompt the messages, its tokens the
    # template's rendering with the tools in it, routing recorded for every token
    trace = get_json(f"{scripted.url}/api/runs/{choice.model_extra['moeviz']['run']}")
    assert trace["prompt"] == [USER]
    prompt_text = "".join(t["text"] for t in trace["tokens"] if t["prompt"])
    assert "<tools>" in prompt_text and '"name": "get_weather"' in prompt_text
    assert "".join(t["text"] for t in trace["tokens"] if not t["prompt"]) == SCRIPT_CALL
    assert choice.model_extra["moeviz"]["shape"][0] == len(trace["tokens"])


@NO_SDIST
def test_a_forced_choice_leaves_a_conforming_answer_as_it_is(scripted):
    """The grammar of a named choice (with Qwen3's optional <think> block before the call)
    admits what the model writes anyway: the same reasoning and call come back."""
    with client_of(scripted) as c:
        r = c.chat.completions.create(model=M, messages=[USER], tools=[WEATHER], temperature=0,
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
    msg = r.choices[0].message
    assert msg.model_extra["reasoning_content"] == THINK
    assert [(t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == [("get_weather", CALL_ARGS)]


@NO_SDIST
def test_parse_with_a_strict_pydantic_tool(scripted):
    """Structured outputs through a tool: the SDK parses the call's arguments into the model."""
    from typing import Literal

    import pydantic

    class GetWeather(pydantic.BaseModel):
        city: str
        unit: Literal["celsius", "fahrenheit"]

    with client_of(scripted) as c:
        r = c.beta.chat.completions.parse(model=M, messages=[USER], temperature=0,
                                          tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")])
    [call] = r.choices[0].message.tool_calls
    assert call.function.parsed_arguments == GetWeather(city="Paris", unit="celsius")


@NO_SDIST
def test_streamed_tool_calls_in_openais_chunk_shapes(scripted):
    with client_of(scripted) as c:
        chunks = list(c.chat.completions.create(model=M, messages=[USER], tools=[WEATHER], temperature=0, stream=True))
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    assert deltas[0].role == "assistant"
    calls = [d.tool_calls for d in deltas if d.tool_calls]
    first = calls[0][0]
    assert first.index == 0 and first.id and first.type == "function" and first.function.name == "get_weather"
    assert all(tc.id is None and tc.function.name is None for d in calls[1:] for tc in d)     # then arguments only
    args = "".join(tc.function.arguments or "" for d in calls for tc in d)
    assert json.loads(args) == CALL_ARGS
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == THINK
    assert not any(d.content for d in deltas)                # no markup leaks into the content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert len(calls) > 2                                     # the arguments came in pieces, as they were written


@NO_SDIST
def test_an_agent_loop_with_the_openai_sdk(scripted):
    """call -> the tool's result -> the answer, each request carrying the history."""
    messages = [USER]
    with client_of(scripted) as c:
        for _turn in range(3):
            r = c.chat.completions.create(model=M, messages=messages, tools=[WEATHER], temperature=0,
                                          extra_body={"return_routed_experts": True})
            msg = r.choices[0].message
            if not msg.tool_calls:
                break
            messages.append(msg.model_dump(exclude_none=True, exclude={"reasoning_content"}))
            for call in msg.tool_calls:
                args = json.loads(call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": f"{args['city']}: 18 degrees, sunny"})
    assert r.choices[0].finish_reason == "stop" and msg.content == ANSWER
    assert msg.model_extra["reasoning_content"] == THINK2
    trace = get_json(f"{scripted.url}/api/runs/{r.choices[0].model_extra['moeviz']['run']}")
    prompt_text = "".join(t["text"] for t in trace["tokens"] if t["prompt"])
    # the earlier call and the tool's result are in the prompt, as Qwen3's template writes them
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>' \
        in prompt_text
    assert "<tool_response>\nParis: 18 degrees, sunny\n</tool_response>" in prompt_text


@NO_SDIST
def test_langchain_bind_tools_loop(scripted):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        """Current weather in a city."""
        return f"{city}: 18 degrees, sunny"

    llm = langchain_openai.ChatOpenAI(base_url=scripted.url + "/v1", api_key="unused", model=M, temperature=0,
                                      max_retries=0).bind_tools([get_weather])
    messages = [HumanMessage("What is the weather in Paris?")]
    ai = llm.invoke(messages)
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [("get_weather", CALL_ARGS)]
    messages.append(ai)
    messages += [get_weather.invoke(c) for c in ai.tool_calls]       # LangChain runs the tool: ToolMessages
    final = llm.invoke(messages)
    assert final.content == ANSWER and not final.tool_calls
    streamed = None
    for part in llm.stream(messages[:1]):
        streamed = part if streamed is None else streamed + part
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [("get_weather", CALL_ARGS)]


@NO_SDIST
def test_litellm_completion_with_tools(scripted):
    litellm = pytest.importorskip("litellm")
    r = litellm.completion(model="openai/" + M, api_base=scripted.url + "/v1", api_key="unused",
                           messages=[USER], tools=[WEATHER], temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == CALL_ARGS
    assert r.choices[0].finish_reason == "tool_calls"
    chunks = list(litellm.completion(model="openai/" + M, api_base=scripted.url + "/v1", api_key="unused",
                                     messages=[USER], tools=[WEATHER], temperature=0, stream=True))
    whole = litellm.stream_chunk_builder(chunks, messages=[USER])
    call = whole.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == CALL_ARGS


CITY = {"type": "function", "function": {"name": "pick_city", "description": "Pick a city and a number of days",
                                         "parameters": {"type": "object", "properties": {
                                             "city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
                                             # (llama-cpp-python's converter ignores minimum / maximum)
                                             "days": {"type": "integer", "enum": [1, 2, 3, 7]}},
                                             "required": ["city", "days"]}}}
NOTE = {"type": "function", "function": {"name": "take_note", "parameters": {
    "type": "object", "properties": {"urgent": {"type": "boolean"}}, "required": ["urgent"]}}}


def _valid_pick(args: dict) -> bool:
    return set(args) == {"city", "days"} and args["city"] in ("Paris", "Tokyo", "Lima") and args["days"] in (1, 2, 3, 7)


def test_a_forced_call_on_the_demo_model_is_valid(demo):
    """The demo model's template knows no tools; the grammar alone makes a valid call."""
    with client_of(demo) as c:
        r = c.chat.completions.create(model=M, messages=[{"role": "user", "content": "def main():"}], max_tokens=200,
                                      tools=[CITY, NOTE], tool_choice="required", parallel_tool_calls=False,
                                      temperature=0)
        calls = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls" and len(calls) == 1
        name, args = calls[0].function.name, json.loads(calls[0].function.arguments)
        assert (name == "pick_city" and _valid_pick(args)) or (name == "take_note" and isinstance(args["urgent"], bool))

        named = c.chat.completions.create(model=M, messages=[{"role": "user", "content": "Sort a list."}],
                                          tools=[CITY, NOTE], tool_choice={"type": "function",
                                                                           "function": {"name": "pick_city"}},
                                          temperature=0.9, seed=3, max_tokens=200)
        [call] = named.choices[0].message.tool_calls
        assert call.function.name == "pick_city" and _valid_pick(json.loads(call.function.arguments))

        chunks = list(c.chat.completions.create(model=M, messages=[{"role": "user", "content": "Sort a list."}],
                                                tools=[CITY, NOTE], tool_choice={"type": "function",
                                                                                 "function": {"name": "pick_city"}},
                                                temperature=0.9, seed=3, max_tokens=200, stream=True))
        parts = [tc for ch in chunks if ch.choices and ch.choices[0].delta.tool_calls
                 for tc in ch.choices[0].delta.tool_calls]
        assert parts[0].function.name == "pick_city"
        assert "".join(p.function.arguments or "" for p in parts) == call.function.arguments

        auto = c.chat.completions.create(model=M, messages=[{"role": "user", "content": "def main():"}], max_tokens=8,
                                         tools=[CITY], tool_choice="none", temperature=0)
        assert auto.choices[0].message.content and not auto.choices[0].message.tool_calls


def test_tool_request_errors_are_openai_errors(demo):
    with client_of(demo) as c:
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=M, messages=[USER], tools=[CITY],
                                      tool_choice={"type": "function", "function": {"name": "nope"}})
        assert e.value.body["message"] == "tool_choice names 'nope', which is not among 'tools'"
        assert e.value.body["param"] == "tool_choice"
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=M, messages=[USER, {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "pick_city", "arguments": "{not json"}}]}])
        assert "arguments is not valid JSON" in e.value.body["message"]


def test_structured_outputs_parse_and_langchain_structured_output(demo):
    pydantic = pytest.importorskip("pydantic")
    from typing import Literal

    class Trip(pydantic.BaseModel):
        city: Literal["Paris", "Tokyo", "Lima"]
        days: Literal[1, 2, 3, 7]
        urgent: bool

    with client_of(demo) as c:
        r = c.beta.chat.completions.parse(model=M, messages=[{"role": "user", "content": "Plan a trip."}],
                                          response_format=Trip, temperature=0, max_tokens=200)
    assert isinstance(r.choices[0].message.parsed, Trip)

    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(base_url=demo.url + "/v1", api_key="unused", model=M, temperature=0,
                                      max_retries=0, max_tokens=200)
    for method in ("function_calling", "json_schema"):      # a forced tool call; response_format
        trip = llm.with_structured_output(Trip, method=method).invoke("Plan a trip.")
        assert isinstance(trip, Trip), method


HARMONY_CALL = ('<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary '
                'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}')
HARMONY_ANSWER = ("<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>"
                  "It is 18 °C in Paris.")


@pytest.fixture(scope="module")
def harmony(tmp_path_factory):
    """gpt-oss's real template; the generation prompt ends in <|start|>assistant."""
    if not TEMPLATES:
        pytest.skip("the llama-cpp-python sdist (gpt-oss's template) is not cached: run `make setup`")
    d = tmp_path_factory.mktemp("harmony")
    path = write_scripted_fixture(d / "harmony.gguf", ScriptedSpec(
        scripts=(HARMONY_CALL, HARMONY_ANSWER), chat_template=TEMPLATES["openai-gpt-oss-120b.jinja"],
        trigger="assistant", marker=" to=assistant",      # a tool's result: <|start|>functions.NAME to=assistant
        added=("<|start|>", "<|message|>", "<|channel|>", "assistant", " to=assistant")))
    with ServerProcess("--model", path, "--n-ctx", "4096", "--data-dir", d / "runs") as s:
        yield s


@NO_SDIST
def test_gpt_oss_harmony_calls_stream_and_loop(harmony):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    with client_of(harmony) as c:
        chunks = list(c.chat.completions.create(model=M, messages=[USER], tools=[tool], temperature=0, stream=True))
        deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
        assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == "Need the weather."
        parts = [tc for d in deltas if d.tool_calls for tc in d.tool_calls]
        assert parts[0].function.name == "get_weather" and parts[0].id
        assert json.loads("".join(p.function.arguments or "" for p in parts)) == {"city": "Paris"}
        assert not any(d.content for d in deltas)
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"

        r = c.chat.completions.create(model=M, messages=[USER], tools=[tool], temperature=0)
        msg = r.choices[0].message
        messages = [USER, msg.model_dump(exclude_none=True, exclude={"reasoning_content"}),
                    {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "18 C, sunny"}]
        final = c.chat.completions.create(model=M, messages=messages, tools=[tool], temperature=0,
                                          extra_body={"return_routed_experts": True})
    assert final.choices[0].message.content == "It is 18 °C in Paris." and final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.model_extra["reasoning_content"] == "Got it."
    trace = get_json(f"{harmony.url}/api/runs/{final.choices[0].model_extra['moeviz']['run']}")
    prompt_text = "".join(t["text"] for t in trace["tokens"] if t["prompt"])
    assert ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>' in prompt_text
    assert '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"18 C, sunny"<|end|>' \
        in prompt_text


def test_an_agent_loop_on_the_demo_model(demo):
    """The loop as OpenAI's Agents SDK runs it with tool_choice required: forced to call,
    then (reset_tool_choice) back to auto once a tool has answered, when the model writes
    its answer. The demo model's template knows no tools: its calls are the generic form's."""
    messages = [{"role": "user", "content": "Pick a city for a trip, then say why."}]
    with client_of(demo) as c:
        first = c.chat.completions.create(model=M, messages=messages, tools=[CITY], tool_choice="required",
                                          temperature=0, max_tokens=200)
        [call] = first.choices[0].message.tool_calls
        args = json.loads(call.function.arguments)
        assert call.function.name == "pick_city" and _valid_pick(args)
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": f"{args['city']} is booked."}]
        second = c.chat.completions.create(model=M, messages=messages, tools=[CITY], tool_choice="auto",
                                           temperature=0, max_tokens=24, extra_body={"return_routed_experts": True})
    answer = second.choices[0]
    assert answer.message.content and not answer.message.tool_calls and answer.finish_reason in ("stop", "length")
    trace = get_json(f"{demo.url}/api/runs/{answer.model_extra['moeviz']['run']}")
    prompt_text = "".join(t["text"] for t in trace["tokens"] if t["prompt"])
    assert '<|im_start|>assistant\n{"tool_calls": [{"name": "pick_city", "arguments": ' in prompt_text
    assert f"<|im_start|>tool\n{args['city']} is booked.<|im_end|>" in prompt_text
