"""JSON calls behind a tag, as llama.cpp's autoparser reads them from the template:

- NVIDIA Nemotron Nano v2: `<TOOLCALL>[{"name": ..., "arguments": {...}}, ...]</TOOLCALL>` (chat-diff-analyzer.cpp's
  Nemotron Nano v2 patch: a JSON list per block, blocks one after another), reasoning `<think>` ... `</think>`.
- GigaChat 3.1: `<|function_call|>{"name": ..., "arguments": {...}}` after the turn's text (its template renders
  one call; GigaChat 3 writes a call as a message of its own, jsonforms.GigaChat3).
"""
from __future__ import annotations

from .families import Family
from .jsonforms import GigaChat3, MiniMaxM1, json_calls
from .scan import Call, json_call, json_value, settled

_SEPARATORS = " \t\r\n[,]"


def _skip(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in " \t\r\n":
        pos += 1
    return pos


class JsonBlocks(Family):
    """Calls in blocks one after another after the turn's text, each opened by the family's first
    marker and read by `block` as JSON (a string may hold any marker)."""

    def parse(self, body, partial, tools):
        opener = self.markers()[0]
        i = body.find(opener)
        if i < 0:
            return settled(body, self.markers(), partial), [], "", False
        content, calls, pos = body[:i].rstrip(), [], i
        while body.startswith(opener, pos):
            got, end = self.block(body, pos + len(opener), partial)
            calls += got
            if end is None:                  # not a call: the rest is text
                break
            if end < 0:
                return content, calls, "", False
            pos = _skip(body, end)
        return content, calls, body[pos:].strip() if not partial else "", False

    def block(self, body: str, pos: int, partial: bool) -> tuple[list[Call], int | None]:
        """The calls of the block whose text starts at `pos` and where it ends (-1: the text ends in it)."""
        raise NotImplementedError


class NemotronV2(JsonBlocks, MiniMaxM1):
    name = "nemotron-v2"
    section_open, section_close = "<TOOLCALL>", "</TOOLCALL>"

    @classmethod
    def detect(cls, src):
        return all(t in src for t in ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>", "<TOOL_RESPONSE>"))

    def block(self, body, pos, partial):
        s = body[pos:]
        got = json_value(s)
        if got is None or not isinstance(got[0], list):       # still being written (or no list)
            return json_calls(s, 0, _SEPARATORS, lambda s, p: s.startswith(self.section_close, p), partial), -1
        end = _skip(body, pos + got[1])
        calls = json_calls(s[:got[1]], 0, _SEPARATORS, lambda s, p: False, False)
        return calls, end + len(self.section_close) if body.startswith(self.section_close, end) else end

    def join(self, calls):
        return self.section_open + "[" + ", ".join(calls) + "]" + self.section_close


class GigaChat31(JsonBlocks, GigaChat3):
    name = "gigachat3"          # GigaChat 3.1: the same family, its newer call syntax
    call_open = "<|function_call|>"

    @classmethod
    def detect(cls, src):
        return "<|role_sep|>" in src and "<|message_sep|>" in src and "<|function_call|>" in src

    def block(self, body, pos, partial):
        call, end = json_call(body[pos:], partial)
        if call is None:
            return [], None
        call.done = end >= 0
        return [call], pos + end if end >= 0 else -1
