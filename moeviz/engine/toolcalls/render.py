"""Tools into the prompt through the model's own chat template, as llama.cpp's --jinja does.

What a template can do is found by rendering probes through it (minja's caps, which
llama.cpp reads): whether it lists `tools`, renders an assistant's `tool_calls`, a
`tool` message, a system message. What it cannot do is polyfilled as minja does: tools
described in a system message, earlier calls written in the family's syntax inside the
assistant's content, tool results as user messages, a system message merged into the
first user message. Nothing of the conversation is dropped.
"""
from __future__ import annotations

import dataclasses
import functools
import json

from ..text import PromptError, render_chat
from .families import Family, detect
from .jsonforms import Generic
from .grammar import tool_grammar
from .harmony import Harmony
from .request import ChatPrompt
from .stream import StreamParser

_TOOL = {"type": "function", "function": {"name": "tool_needle", "description": "probe",
                                          "parameters": {"type": "object", "properties": {"argument_needle": {"type": "string"}}}}}
_USER = {"role": "user", "content": "user_needle"}
_ID = "call00001"        # 9 alphanumerics: Mistral's templates refuse other ids
# StepFun 3.5 Flash's template: llama.cpp trims every message's text before rendering it (common/chat.cpp,
# workaround::trim_all_content: whitespace left in drives the model into reasoning loops), C's isspace
_TRIMMED = "You have access to the following functions in JSONSchema format"
_C_SPACE = " \t\n\v\f\r"


_PARTS = [{"type": "text", "text": "part_needle_1"}, {"type": "text", "text": "part_needle_2"}]


def _reads_parts(text: str) -> bool:
    """The parts' texts rendered, not the list's repr (a template that prints the content as it is)."""
    return "part_needle_1" in text and "part_needle_2" in text and "'text'" not in text and '"text"' not in text


def _call_msg(args) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": _ID, "type": "function", "function": {"name": "tool_needle", "arguments": args}}]}


@dataclasses.dataclass(frozen=True)
class Caps:
    tools: bool             # lists the `tools` it is given
    tool_calls: bool        # renders an assistant's tool_calls
    object_args: bool       # ... with their arguments as an object (else as JSON text)
    tool_responses: bool    # renders a `tool` message's content
    system: bool            # renders a system message
    typed_content: bool     # reads a message's content as a list of text parts


@functools.lru_cache(maxsize=8)
def caps(src: str) -> Caps:
    def out(messages, tools=None) -> str:
        try:
            return render_chat(src, messages, "", "", tools=tools, add_generation_prompt=False)
        except PromptError:
            return ""

    def has_args(text: str) -> bool:       # however its syntax spells the key (the probes list no tools)
        return "argument_needle" in text

    object_args = has_args(out([_USER, _call_msg({"argument_needle": "x"})]))
    calls = object_args or has_args(out([_USER, _call_msg('{"argument_needle": "x"}')]))
    response = out([_USER, _call_msg({"argument_needle": "x"}),
                    {"role": "tool", "tool_call_id": _ID, "name": "tool_needle", "content": "response_needle"}])
    return Caps(tools="tool_needle" in out([_USER], tools=[_TOOL]), tool_calls=calls, object_args=object_args,
                tool_responses="response_needle" in response,
                system="system_needle" in out([{"role": "system", "content": "system_needle"}, _USER]),
                typed_content=_reads_parts(out([{"role": "user", "content": _PARTS}]))
                and bool(out([{"role": "user", "content": []}])))      # as llama.cpp's probe: no parts at all


def tools_system_prompt(family: Family, tools: list[dict]) -> str:
    """minja's polyfill: the tools, and how to call one, for a template that lists none."""
    example = family.join([family.write("tool_name", {"argument": "value"})])
    text = ("You can call any of the following tools to satisfy the user's requests: "
            + json.dumps(tools, indent=2, ensure_ascii=False) + "\n\nExample tool call syntax:\n\n" + example + "\n\n")
    if isinstance(family, Generic):
        text += ("To call tools, reply with only that JSON object (several calls in its list if needed); "
                 "otherwise reply in plain text.")
    return text


def _args(call: dict) -> dict:
    a = call["function"]["arguments"]
    return a if isinstance(a, dict) else {"value": a}


def _text_args(call: dict) -> str:
    a = call["function"]["arguments"]
    return a if isinstance(a, str) else json.dumps(a, ensure_ascii=False)


def prepare_messages(src: str, prompt: ChatPrompt, family: Family) -> tuple[list[dict], list | None]:
    """The messages and tools the template is given (polyfilled where it cannot)."""
    c = caps(src)
    msgs = [dict(m) for m in prompt]
    for m in msgs:
        # typed content (common/chat.cpp, messages_inp_normalizer): a template that reads parts gets them, one
        # that reads a string gets them joined (request.join_parts)
        parts = m.pop("content_parts", None)
        if parts is not None and c.typed_content:
            m["content"] = [{"type": "text", "text": p.strip(_C_SPACE) if _TRIMMED in src else p} for p in parts]
    if _TRIMMED in src:
        for m in msgs:
            for key in ("content", "reasoning_content"):
                if isinstance(m.get(key), str):
                    m[key] = m[key].strip(_C_SPACE)
    if not isinstance(family, Harmony):
        for m in msgs:
            if m["role"] == "developer":
                m["role"] = "system"
    tools = prompt.tools or None      # tool_choice none too (as llama.cpp): known to the model, not parsed out
    if tools and not c.tools:
        note = tools_system_prompt(family, tools)
        if msgs[0]["role"] == "system":
            msgs[0]["content"] = (msgs[0]["content"] or "") + "\n\n" + note
        else:
            msgs.insert(0, {"role": "system", "content": note})
    out = []
    for m in msgs:
        if m.get("tool_calls") and not c.tool_calls:
            calls = [family.write(t["function"]["name"], _args(t), i, t.get("id", "")) for i, t in enumerate(m["tool_calls"])]
            text = family.join(calls)
            m = {"role": "assistant", "content": (m["content"] + "\n" if m.get("content") else "") + text}
        elif m.get("tool_calls") and not c.object_args:
            m = {**m, "tool_calls": [{**t, "function": {**t["function"], "arguments": _text_args(t)}}
                                     for t in m["tool_calls"]]}
        elif m["role"] == "tool" and not c.tool_responses:
            m = {"role": "user", "content": json.dumps({"tool_response": {
                "tool": m.get("name", ""), "tool_call_id": m.get("tool_call_id", ""), "content": m["content"]}},
                ensure_ascii=False)}
        elif m.get("reasoning_content") and isinstance(family, Harmony):
            m = {**m, "thinking": m["reasoning_content"]}
        elif m.get("reasoning_content") and family.name == "solar-open":
            m = {**m, "reasoning": m["reasoning_content"]}
        out.append(m)
    if not c.system and out and out[0]["role"] == "system":
        first = out.pop(0)
        if out and out[0]["role"] == "user":
            out[0] = {**out[0], "content": first["content"] + "\n" + (out[0]["content"] or "")}
        else:
            out.insert(0, {"role": "user", "content": first["content"]})
    return out, (tools if c.tools else None)


@dataclasses.dataclass
class ChatPlan:
    """A chat request against one template: its prompt text, how to read the output back
    and the grammar a forced tool choice runs under."""
    text: str
    family: Family
    prompt: ChatPrompt
    thinking: bool              # the template knows reasoning tags: they are read out of the output
    opened: bool                # the prompt itself opened the reasoning (DeepSeek R1, GLM-4.7, gpt-oss's header)
    grammar: str | None         # GBNF for tool_choice required / a named function, else None

    def parser(self) -> StreamParser:
        return StreamParser(self.family, self.prompt.tools, thinking=self.thinking, opened=self.opened,
                            keep_reasoning=self.prompt.reasoning_format != "none",
                            calls_wanted=self.prompt.calls_wanted, parallel=self.prompt.parallel_tool_calls)


def as_chat_prompt(prompt) -> ChatPrompt:
    if isinstance(prompt, ChatPrompt):
        return prompt
    return ChatPrompt([dict(m) for m in prompt])


def plan_chat(template: str, prompt, bos: str = "", eos: str = "") -> ChatPlan:
    """Render `prompt` (a ChatPrompt, or plain messages) through `template` with its tools."""
    prompt = as_chat_prompt(prompt)
    family = detect(template)
    messages, tools = prepare_messages(template, prompt, family)
    options = prompt.template_options()
    text = render_chat(template, messages, bos, eos, tools=tools, **options)
    if hasattr(family, "parse_message"):        # gpt-oss, Solar Open: the prompt ends in the turn's header
        thinking, opened = True, text.endswith(family.prefix)
    else:
        thinking = family.think[0] in template
        opened = thinking and text.rstrip().endswith(family.think[0])
    keep = prompt.reasoning_format != "none"
    grammar = tool_grammar(family, prompt, thinking=thinking and keep, opened=opened) \
        if prompt.tools and (prompt.tool_choice == "required" or prompt.forced_name) else None
    return ChatPlan(text, family, prompt, thinking, opened, grammar)


def render_prompt(template: str, prompt, bos: str = "", eos: str = "") -> str:
    return plan_chat(template, prompt, bos, eos).text
