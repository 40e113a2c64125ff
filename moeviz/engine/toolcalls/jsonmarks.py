"""JSON arguments behind a plain marker, as llama.cpp reads them (its autoparser on the template unless named):

- Functionary v3.1 (meetkai, Llama 3.1 based): `<function=NAME>{...}</function>` per call, one after another.
- Firefunction v2 (fireworks-ai): `functools[{"name": ..., "arguments": {...}}, ...]` after the turn's text.
- Apertus (swiss-ai): `<|tools_prefix|>[{"NAME": {...}}, ...]<|tools_suffix|>`.
- Functionary v3.2 (common/parsers/functionary-v3-2.cpp): the prompt ends in `>>>`, the model names the
  recipient: `all\\nTEXT` (the rest is content, a later `>>>NAME` included, as llama.cpp's parser reads it)
  or `NAME\\n{...}` for a tool, calls one after another.
(IBM Granite 3.3 has no family: llama.cpp's autoparser finds no call syntax in its template, whose
`<|tool_call|>[...]` is only described in its system text, and reads its output as content and `<think>`
reasoning; the generic family reads it so, and a forced call in the generic JSON form.)

The autoparser keeps the text before a call as written (trailing whitespace included), leading
whitespace aside.
"""
from __future__ import annotations

import json
import re

from .families import Family, raw_args
from .jsonforms import CallSection, Mistral
from .scan import Call, dumps, held, json_value

_KEY = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"\s*:\s*')


class AsWritten:
    """The content before the first call as written (only whitespace: none)."""

    def parse(self, body, partial, tools):
        content, calls, post, pending = super().parse(body, partial, tools)
        if calls:
            first = min(i for i in (body.find(m) for m in self.markers()) if i >= 0)
            content = body[:first] if body[:first].strip() else ""
        return content, calls, post, pending


class FunctionaryV31(AsWritten, Family):
    name = "functionary-v3.1"
    call_open, call_close = "<function=", "</function>"

    @classmethod
    def detect(cls, src):
        return "'<function=' + tool_call['function']['name'] + '>'" in src

    def _close_at(self, body, k):
        """The close after the arguments' JSON (a string may hold `</function>`)."""
        gt = body.find(">", k)
        got = json_value(body, gt + 1) if gt >= 0 else None
        return body.find(self.call_close, got[1]) if got is not None and isinstance(got[0], dict) else -1

    def call(self, seg, partial, tools):
        gt = seg.find(">")
        if gt < 0:
            return None
        return Call(seg[:gt].strip(), raw_args(seg[gt + 1:], partial)[0])

    def write(self, name, args, index=0, call_id=""):
        return f"<function={name}>{dumps(args)}</function>"


class Firefunction(AsWritten, Mistral):
    name = "firefunction-v2"
    call_open = "functools"

    def __init__(self):
        super().__init__(args_style=False)

    @classmethod
    def detect(cls, src):
        return " functools[" in src

    def write(self, name, args, index=0, call_id=""):
        return dumps({"name": name, "arguments": args})

    def join(self, calls):
        return " functools[" + ", ".join(calls) + "]"


def named_objects(s: str, pos: int, partial: bool) -> list[Call]:
    """Apertus's calls, `{"NAME": {...}}` objects of a list from `pos` on."""
    calls = []
    while True:
        while pos < len(s) and s[pos] in " \t\r\n,":
            pos += 1
        m = _KEY.match(s, pos)
        if m is None:
            return calls
        try:
            name = json.loads(f'"{m.group(1)}"')
        except json.JSONDecodeError:
            return calls
        got = json_value(s, m.end())
        close = m.end() if got is None else got[1]
        while close < len(s) and s[close] in " \t\r\n":
            close += 1
        if got is None or close >= len(s):
            calls.append(Call(name, raw_args(s[m.end():], partial)[0] if got is None else s[m.end():got[1]].strip()))
            return calls
        if not isinstance(got[0], dict) or s[close] != "}":
            return calls
        calls.append(Call(name, s[m.end():got[1]].strip(), done=True))
        pos = close + 1


class Apertus(CallSection):
    name = "apertus"
    section_open, section_close = "<|tools_prefix|>", "<|tools_suffix|>"

    @classmethod
    def detect(cls, src):
        return "<|tools_prefix|>" in src and "<|tools_suffix|>" in src

    def before(self, text):
        return text if text.strip() else ""            # as written, as AsWritten keeps it

    def section_calls(self, s, partial):
        s = s.lstrip()
        return named_objects(s, 1, partial) if s.startswith("[") else []

    def write(self, name, args, index=0, call_id=""):
        return dumps({name: args})

    def join(self, calls):
        return self.section_open + "[" + ", ".join(calls) + "]" + self.section_close


class FunctionaryV32(Family):
    """The output after the prompt's `>>>`: `all\\n` and content, or calls `NAME\\n{...}` of known tools."""
    name = "functionary-v3.2"
    ALL = "all\n"

    @classmethod
    def detect(cls, src):
        return ">>>all" in src and ">>>${recipient}" in src

    def parse(self, body, partial, tools):
        if body.startswith(self.ALL):
            return body[len(self.ALL):], [], "", False
        names = [t["function"]["name"] + "\n" for t in tools or ()]
        if partial and any(m.startswith(body) for m in (self.ALL, *names)):
            return "", [], "", True
        calls, pos = [], 0
        while pos < len(body):
            if body.startswith(">>>", pos):          # as the template writes a later call (llama.cpp: no call)
                pos += 3
            head = next((n for n in names if body.startswith(n, pos)), None)
            if head is None:
                break
            got = json_value(body, pos + len(head))
            if got is None or not isinstance(got[0], dict):
                calls.append(Call(head[:-1], raw_args(body[pos + len(head):], partial)[0]))
                return "", calls, "", False
            calls.append(Call(head[:-1], body[pos + len(head):got[1]].strip(), done=True))
            pos = got[1]
        rest = body[pos:]
        if partial and held(rest, [">>>", *names]) == len(rest):
            rest = ""
        return ("" if calls else rest), calls, (rest.strip() if calls and not partial else ""), False

    def write(self, name, args, index=0, call_id=""):
        return f"{name}\n{dumps(args)}"

    def join(self, calls):
        return ">>>".join(calls)

