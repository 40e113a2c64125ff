"""Families whose calls are JSON: Mistral's [TOOL_CALLS], Llama 3.x's bare object and
llama.cpp's generic form (templates that know no tools)."""
from __future__ import annotations

import re

from .families import Family, raw_args
from .scan import Call, dumps, json_call, json_value, settled

_FIRST_KEY = re.compile(r'\s*\{\s*"((?:[^"\\]|\\.)*)"\s*:')


def json_calls(s: str, pos: int, separators: str, at_end, partial: bool) -> list:
    """The JSON call objects of a list from `pos` on: separators skipped, until `at_end(s, pos)`,
    the end of the text, or a call still being written (kept, not done, when `partial`)."""
    calls = []
    while True:
        while pos < len(s) and s[pos] in separators:
            pos += 1
        if pos >= len(s) or at_end(s, pos):
            return calls
        call, end = json_call(s[pos:], partial)
        if call is None:
            return calls
        calls.append(call)
        if end < 0:
            return calls
        call.done = True
        pos += end

class Mistral(Family):
    """Mistral Nemo: [TOOL_CALLS][{"name", "arguments", "id"}, ...]; Mistral Small 3.2 /
    Devstral / Ministral: [TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...} (the id optional), repeated."""
    name = "mistral"
    call_open = "[TOOL_CALLS]"

    def __init__(self, args_style: bool = False):
        self.args_style = args_style

    @classmethod
    def detect(cls, src):
        return "[TOOL_CALLS]" in src

    def parse(self, body, partial, tools):
        if self.args_style:
            return super().parse(body, partial, tools)
        i = body.find(self.call_open)
        if i < 0:
            return settled(body, self.markers(), partial), [], "", False
        content, s = body[:i].rstrip(), body[i + len(self.call_open):].lstrip()
        if not s.startswith("["):
            return content, [], "" if partial else s, False
        return content, json_calls(s, 1, " \t\r\n,", lambda s, pos: s[pos] == "]", partial), "", False

    def call(self, seg, partial, tools):
        a = seg.find("[ARGS]")
        if a < 0:
            return None
        head = seg[:a]
        name, _, call_id = head.partition("[CALL_ID]")
        args, _ = raw_args(seg[a + len("[ARGS]"):], partial)
        return Call(name.strip(), args, id=call_id.strip())

    def write(self, name, args, index=0, call_id=""):
        if self.args_style:
            return f"[TOOL_CALLS]{name}[ARGS]{dumps(args)}"
        return dumps({"name": name, "arguments": args, "id": call_id or f"call{index:05d}"})

    def join(self, calls):
        return "".join(calls) if self.args_style else "[TOOL_CALLS][" + ", ".join(calls) + "]"


class CallSection(Family):
    """Calls in one section opened by `section_open`: the text before it is the content,
    what follows it is read by `section_calls`."""

    def markers(self):
        return [self.section_open]

    def parse(self, body, partial, tools):
        i = body.find(self.section_open)
        if i < 0:
            return settled(body, self.markers(), partial), [], "", False
        return self.before(body[:i]), self.section_calls(body[i + len(self.section_open):], partial), "", False

    def before(self, text: str) -> str:
        return text.rstrip()

    def section_calls(self, s: str, partial: bool) -> list[Call]:
        raise NotImplementedError


class MiniMaxM1(CallSection):
    """MiniMax-M1: <tool_calls>{"name": ..., "arguments": {...}} one object a line ...</tool_calls>;
    Apriel 1.5 / 1.6: the same objects as a JSON list inside the tags."""
    name = "minimax-m1"
    section_open, section_close = "<tool_calls>", "</tool_calls>"

    @classmethod
    def detect(cls, src):
        return "<tool_calls>" in src and "</tool_calls>" in src

    def section_calls(self, s, partial):
        return json_calls(s, 0, " \t\r\n[,]", lambda s, pos: s.startswith(self.section_close, pos), partial)

    def write(self, name, args, index=0, call_id=""):
        return dumps({"name": name, "arguments": args})

    def join(self, calls):
        return self.section_open + "\n" + "\n".join(calls) + "\n" + self.section_close


class GigaChat3(Family):
    """GigaChat 3 (10B-A1.8B MoE): a call is a message of its own,
    <|message_sep|>\n\nfunction call<|role_sep|>\n{"name": ..., "arguments": {...}}; one call per turn, as
    llama.cpp's gigachat-v3 parser reads it (max_calls = 1): what follows the first call, a second call
    included, is dropped."""
    name = "gigachat3"
    call_open = "<|message_sep|>\n\nfunction call<|role_sep|>\n"

    @classmethod
    def detect(cls, src):
        return "<|role_sep|>" in src and "<|message_sep|>" in src and "function call" in src

    def parse(self, body, partial, tools):
        content, calls, _, pending = super().parse(body, partial, tools)
        return content, calls[:1], "", pending

    def _close_at(self, body, k):
        """A call ends with its JSON object (a string may hold the next call's marker)."""
        got = json_value(body, k)
        return got[1] if got is not None and isinstance(got[0], dict) else -1

    def call(self, seg, partial, tools):
        return json_call(seg, partial)[0]

    def write(self, name, args, index=0, call_id=""):
        return self.call_open + dumps({"name": name, "arguments": args})

    def join(self, calls):
        return "".join(calls)


class JsonFamily(Family):
    """Calls written as bare JSON: the output is one (when it begins with `{` and names a
    known tool), else it is content."""
    keys: tuple[str, ...] = ()

    def parse(self, body, partial, tools):
        s = body.lstrip()
        for tag in ("<|python_tag|>",):
            s = s[len(tag):].lstrip() if s.startswith(tag) else s
        if not s.startswith("{"):
            if partial and s and "<|python_tag|>".startswith(s):
                return "", [], "", True
            return settled(body, [], partial) if partial else body, [], "", False
        got = json_value(s)
        if got is None:
            m = _FIRST_KEY.match(s)
            if partial and (m is None or m.group(1) in self.keys):
                return "", [], "", True
            return (settled(body, [], partial) if partial else body), [], "", False
        calls = self.calls(got[0], tools)
        if calls is None:
            return body if not partial else settled(body, [], partial), [], "", False
        if isinstance(calls, str):
            return calls, [], "", False
        rest = s[got[1]:].strip()
        return "", calls, rest if not partial else "", False

    def calls(self, value, tools):
        raise NotImplementedError


def _known(name, tools) -> bool:
    return any(t["function"]["name"] == name for t in tools or ())


class Llama3(JsonFamily):
    """Llama 3.1 / 3.2 / 3.3: {"name": ..., "parameters": {...}} (optionally "type": "function")."""
    name = "llama3"
    keys = ("name", "type")

    @classmethod
    def detect(cls, src):
        return "<|start_header_id|>" in src and "ipython" in src

    def calls(self, value, tools):
        if not isinstance(value, dict) or not _known(value.get("name"), tools):
            return None
        args = value.get("parameters", value.get("arguments", {}))
        return [Call(value["name"], args if isinstance(args, str) else dumps(args), done=True)]

    def write(self, name, args, index=0, call_id=""):
        return dumps({"name": name, "parameters": args})

    def join(self, calls):
        return calls[0] if len(calls) == 1 else "; ".join(calls)


class Generic(JsonFamily):
    """llama.cpp's form for templates that know no tools: one JSON object,
    {"tool_calls": [{"name", "arguments", "id"}]}, {"tool_call": {...}} or {"response": "..."}."""
    name = "generic"
    keys = ("tool_calls", "tool_call", "response")

    def calls(self, value, tools):
        if not isinstance(value, dict):
            return None
        if isinstance(value.get("response"), str) and len(value) == 1:
            return value["response"]
        items = value.get("tool_calls")
        if items is None and isinstance(value.get("tool_call"), dict):
            items = [value["tool_call"]]
        if not isinstance(items, list) or not items:
            return None
        out = []
        for it in items:
            if not isinstance(it, dict) or not _known(it.get("name"), tools):
                return None
            args = it.get("arguments", {})
            out.append(Call(it["name"], args if isinstance(args, str) else dumps(args),
                            it.get("id") if isinstance(it.get("id"), str) else "", True))
        return out

    def write(self, name, args, index=0, call_id=""):
        return dumps({"name": name, "arguments": args})

    def join(self, calls):
        return '{"tool_calls": [' + ", ".join(calls) + "]}"
