"""JSON calls behind a tag, as llama.cpp's autoparser reads them from the template:

- NVIDIA Nemotron Nano v2: `<TOOLCALL>[{"name": ..., "arguments": {...}}, ...]</TOOLCALL>` (chat-diff-analyzer.cpp's
  Nemotron Nano v2 patch: a JSON list per block, blocks one after another), reasoning `<think>` ... `</think>`.
- GigaChat 3.1: `<|function_call|>{"name": ..., "arguments": {...}}` after the turn's text (its template renders
  one call; GigaChat 3 writes a call as a message of its own, jsonforms.GigaChat3).
"""
from __future__ import annotations

from .families import Family
from .jsonforms import GigaChat3, json_calls
from .scan import dumps, json_call, json_value, settled

_SEPARATORS = " \t\r\n[,]"


def _skip(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in " \t\r\n":
        pos += 1
    return pos


class NemotronV2(Family):
    name = "nemotron-v2"
    section_open, section_close = "<TOOLCALL>", "</TOOLCALL>"

    @classmethod
    def detect(cls, src):
        return all(t in src for t in ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>", "<TOOL_RESPONSE>"))

    def markers(self):
        return [self.section_open]

    def parse(self, body, partial, tools):
        i = body.find(self.section_open)
        if i < 0:
            return settled(body, self.markers(), partial), [], "", False
        content, calls, pos = body[:i].rstrip(), [], i
        while body.startswith(self.section_open, pos):
            s = body[pos + len(self.section_open):]
            got = json_value(s)
            if got is None or not isinstance(got[0], list):       # still being written (or no list)
                at_close = lambda s, p: s.startswith(self.section_close, p)  # noqa: E731
                return content, calls + json_calls(s, 0, _SEPARATORS, at_close, partial), "", False
            calls += json_calls(s[:got[1]], 0, _SEPARATORS, lambda s, p: False, False)
            pos += len(self.section_open) + got[1]
            pos = _skip(body, pos)
            pos = _skip(body, pos + len(self.section_close)) if body.startswith(self.section_close, pos) else pos
        return content, calls, body[pos:].strip() if not partial else "", False

    def write(self, name, args, index=0, call_id=""):
        return dumps({"name": name, "arguments": args})

    def join(self, calls):
        return self.section_open + "[" + ", ".join(calls) + "]" + self.section_close


class GigaChat31(GigaChat3):
    name = "gigachat3"          # GigaChat 3.1: the same family, its newer call syntax
    call_open = "<|function_call|>"

    @classmethod
    def detect(cls, src):
        return "<|role_sep|>" in src and "<|message_sep|>" in src and "<|function_call|>" in src

    def parse(self, body, partial, tools):
        """The calls one after another, each read as JSON (a string may hold the marker)."""
        i = body.find(self.call_open)
        if i < 0:
            return settled(body, self.markers(), partial), [], "", False
        content, calls, pos = body[:i].rstrip(), [], i
        while body.startswith(self.call_open, pos):
            call, end = json_call(body[pos + len(self.call_open):], partial)
            if call is None:
                break
            calls.append(call)
            if end < 0:
                return content, calls, "", False
            call.done = True
            pos = _skip(body, pos + len(self.call_open) + end)
        return content, calls, body[pos:].strip() if not partial else "", False
