"""Anthropic's extended thinking through `POST /v1/messages` (moeviz/server/routes/anthropic.py,
api_convert.py) with the official anthropic SDK against a real `moeviz serve` on the
scripted fixture (tests/test_clients.py: Qwen3's real template; its greedy decoding
thinks THINK and calls get_weather, and once a tool's result is in the context thinks
THINK2 and answers). Each answer is checked against the script and each run against
the prompt it really read (the stored trace's messages and prompt tokens)."""
import json

import pytest
from test_api_surfaces import http, stored
from test_chat_templates import NO_SDIST
from test_clients import ANSWER, CALL_ARGS, THINK, THINK2, USER, WEATHER, scripted  # noqa: F401 - fixture

from moeviz.server.routes.anthropic import signature

anthropic = pytest.importorskip("anthropic")

TOOL = {"name": WEATHER["function"]["name"], "description": WEATHER["function"]["description"],
        "input_schema": WEATHER["function"]["parameters"]}
ON = {"type": "enabled", "budget_tokens": 1024}
BASE = dict(model="m", max_tokens=2048, tools=[TOOL], extra_body={"temperature": 0})
RESULT = "18 degrees, sunny"

pytestmark = NO_SDIST


@pytest.fixture(scope="module")
def claude(scripted):  # noqa: F811 - the fixture imported above
    with anthropic.Anthropic(base_url=scripted.url, api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def prompt_text(server, msg) -> str:
    trace = stored(server, msg.model_extra["moeviz"]["run"])
    return "".join(t["text"] for t in trace["tokens"] if t["prompt"])


def comparable(msg) -> dict:
    """A message as the SDK holds it, less what differs between two runs of one request
    (its id, its run, each tool_use's id)."""
    out = msg.model_dump(exclude={"id", "moeviz"}, exclude_none=True)
    out["content"] = [{k: v for k, v in b.items() if not (b["type"] == "tool_use" and k == "id")}
                      for b in out["content"]]
    return out


def tool_loop_history(first) -> list:
    [use] = [b for b in first.content if b.type == "tool_use"]
    return [USER, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}]}]


def test_thinking_enabled_answers_a_thinking_block_before_the_tool_use(claude, scripted):
    msg = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    assert [b.type for b in msg.content] == ["thinking", "tool_use"]
    think, use = msg.content
    assert think.thinking == THINK and think.signature == signature(THINK)
    assert use.name == "get_weather" and use.input == CALL_ARGS and use.id
    assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
    trace = stored(scripted, msg.model_extra["moeviz"]["run"])
    prompt = [t for t in trace["tokens"] if t["prompt"]]
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (len(prompt), len(trace["tokens"]) - len(prompt))
    # thinking on: the generation prompt leaves the model to open its own <think>
    assert "".join(t["text"] for t in prompt).endswith("<|im_start|>assistant\n")
    # adaptive: the model's choice, which for a local model is its template's switch on
    adaptive = claude.messages.create(messages=[USER], thinking={"type": "adaptive"}, **BASE)
    assert comparable(adaptive) == comparable(msg)


def test_streamed_thinking_events_and_the_sdks_accumulated_message(claude):
    whole = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    events = list(claude.messages.create(messages=[USER], thinking=ON, stream=True, **BASE))
    kinds = [(e.type, getattr(e, "index", None), e.delta.stop_reason if e.type == "message_delta" else
              getattr(getattr(e, "delta", None), "type", None)) for e in events]
    n_think = kinds.count(("content_block_delta", 0, "thinking_delta"))
    n_args = kinds.count(("content_block_delta", 1, "input_json_delta"))
    assert n_think > 1 and n_args >= 1
    assert kinds == ([("message_start", None, None), ("content_block_start", 0, None)]
                     + [("content_block_delta", 0, "thinking_delta")] * n_think
                     + [("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
                        ("content_block_start", 1, None)]
                     + [("content_block_delta", 1, "input_json_delta")] * n_args
                     + [("content_block_stop", 1, None), ("message_delta", None, "tool_use"),
                        ("message_stop", None, None)])
    assert events[1].content_block.type == "thinking" and events[1].content_block.thinking == ""
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == THINK
    assert events[2 + n_think].delta.signature == whole.content[0].signature
    assert events[4 + n_think].content_block.type == "tool_use"
    assert events[-2].usage.output_tokens == whole.usage.output_tokens
    with claude.messages.stream(messages=[USER], thinking=ON, **BASE) as stream:
        final = stream.get_final_message()
    assert comparable(final) == comparable(whole)


def test_thinking_disabled_turns_the_templates_thinking_off(claude, scripted):
    off = dict(messages=[USER], thinking={"type": "disabled"}, **BASE)
    msg = claude.messages.create(**off)
    # the scripted model reasons whatever the prompt says: its reasoning is left out, as
    # Anthropic answers with thinking disabled, and the rest is the same answer
    assert [(b.type, b.name, b.input) for b in msg.content] == [("tool_use", "get_weather", CALL_ARGS)]
    assert "thinking" not in [b.type for b in msg.content]
    events = list(claude.messages.create(stream=True, **off))
    assert [e.content_block.type for e in events if e.type == "content_block_start"] == ["tool_use"]
    assert [e.index for e in events if e.type == "content_block_start"] == [0]
    with claude.messages.stream(**off) as stream:
        assert comparable(stream.get_final_message()) == comparable(msg)
    # Qwen3's template with enable_thinking false writes the empty reasoning block itself
    assert prompt_text(scripted, msg).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    on = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    assert not prompt_text(scripted, on).endswith("</think>\n\n")


def test_the_tool_loop_sends_the_thinking_block_back(claude, scripted):
    first = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    history = tool_loop_history(first)
    assert history[1]["content"][0] == {"type": "thinking", "thinking": THINK, "signature": signature(THINK)}
    second = claude.messages.create(messages=history, thinking=ON, **BASE)
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in second.content] == [
        ("thinking", THINK2), ("text", ANSWER)]
    assert second.stop_reason == "end_turn"
    trace = stored(scripted, second.model_extra["moeviz"]["run"])
    [use] = first.content[1:]
    assert trace["prompt"] == [USER, {"role": "assistant", "content": "", "reasoning_content": THINK, "tool_calls": [
        {"id": use.id, "type": "function", "function": {"name": "get_weather", "arguments": CALL_ARGS}}]},
        {"role": "tool", "tool_call_id": use.id, "content": RESULT}]
    # Qwen3's template keeps the reasoning of the turn since the user's question
    text = prompt_text(scripted, second)
    assert ("<|im_start|>assistant\n<think>\n" + THINK + "\n</think>\n\n<tool_call>\n") in text
    assert "<tool_response>\n" + RESULT + "\n</tool_response>" in text
    with claude.messages.stream(messages=history, thinking=ON, **BASE) as stream:
        assert comparable(stream.get_final_message()) == comparable(second)


def test_redacted_thinking_is_accepted_and_renders_nothing(claude, scripted):
    first = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    history = tool_loop_history(first)
    history[1]["content"][0] = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rL"}
    second = claude.messages.create(messages=history, thinking=ON, **BASE)
    assert [b.type for b in second.content] == ["thinking", "text"] and second.content[1].text == ANSWER
    text = prompt_text(scripted, second)
    assert THINK not in text and "EmwKAhgB" not in text and "<tool_call>\n" in text
    # a turn of nothing but redacted thinking is still the assistant's turn
    only = [USER, {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}]},
            {"role": "user", "content": "And in Lyon?"}]
    msg = claude.messages.create(messages=only, **{**BASE, "max_tokens": 4})
    assert [m["role"] for m in stored(scripted, msg.model_extra["moeviz"]["run"])["prompt"]] == [
        "user", "assistant", "user"]


def test_display_omitted_keeps_the_signature_only(claude):
    omitted = {**ON, "display": "omitted"}
    msg = claude.messages.create(messages=[USER], thinking=omitted, **BASE)
    assert msg.content[0].type == "thinking" and msg.content[0].thinking == ""
    assert msg.content[0].signature == signature(THINK)
    events = list(claude.messages.create(messages=[USER], thinking=omitted, stream=True, **BASE))
    assert [e.delta.type for e in events if e.type == "content_block_delta" and e.index == 0] == ["signature_delta"]
    with claude.messages.stream(messages=[USER], thinking=omitted, **BASE) as stream:
        assert comparable(stream.get_final_message()) == comparable(msg)


def test_thinking_cut_by_max_tokens_still_ends_signed(claude):
    kw = {**BASE, "max_tokens": 6}
    msg = claude.messages.create(messages=[USER], **kw)
    assert msg.stop_reason == "max_tokens" and [b.type for b in msg.content] == ["thinking"]
    assert THINK.startswith(msg.content[0].thinking) and msg.content[0].signature == signature(msg.content[0].thinking)
    with claude.messages.stream(messages=[USER], **kw) as stream:
        assert comparable(stream.get_final_message()) == comparable(msg)


@pytest.mark.parametrize("thinking, says", [
    ({"type": "enabled"}, "thinking.budget_tokens must be an integer of at least 1024"),
    ({"type": "enabled", "budget_tokens": 512}, "thinking.budget_tokens must be an integer of at least 1024"),
    ({"type": "enabled", "budget_tokens": "2000"}, "thinking.budget_tokens must be an integer of at least 1024"),
    ({"type": "enabled", "budget_tokens": 2048}, "thinking.budget_tokens must be less than max_tokens"),
    ({"type": "sometimes"}, "'thinking' must be {type: enabled, budget_tokens}"),
    ("enabled", "'thinking' must be {type: enabled, budget_tokens}"),
    ({"type": "disabled", "display": "full"}, "thinking.display must be summarized or omitted"),
])
def test_bad_thinking_values_are_one_line_400s(claude, scripted, thinking, says):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(messages=[USER], thinking=thinking, **BASE)
    assert e.value.status_code == 400 and e.value.body["type"] == "error"
    error = e.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(says) and "\n" not in error["message"]


def test_thinking_blocks_belong_to_the_assistant(scripted):
    status, body, _ = http(scripted, "/v1/messages", {"model": "m", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "thinking", "thinking": "x", "signature": "s"},
                                     {"type": "text", "text": "hi"}]}]})
    assert status == 400 and body["error"]["message"] == (
        "messages[0].content[0]: a thinking block belongs to an assistant message")


def test_tool_results_come_before_the_users_text(claude, scripted):
    first = claude.messages.create(messages=[USER], thinking=ON, **BASE)
    history = tool_loop_history(first)
    history[2]["content"].append({"type": "text", "text": "Answer briefly."})
    msg = claude.messages.create(messages=history, **{**BASE, "max_tokens": 4})
    prompt = stored(scripted, msg.model_extra["moeviz"]["run"])["prompt"]
    assert [(m["role"], m["content"]) for m in prompt[2:]] == [("tool", RESULT), ("user", "Answer briefly.")]
