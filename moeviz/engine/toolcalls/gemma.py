"""Gemma 4's tool calls (llama.cpp common/parsers/gemma4.cpp): `<|tool_call>call:NAME{key:VALUE,...}<tool_call|>`,
strings written between `<|"|>` marks and keys bare; reasoning in `<|channel>thought ... <channel|>`."""
from __future__ import annotations

import json
import re

from .families import Family
from .scan import Call, dumps

Q = '<|"|>'
_WORD = re.compile(r"[A-Za-z0-9_.+\-]+")


def gemma_json(text: str) -> str | None:
    """Gemma's argument syntax as JSON text (plain JSON reads as itself), or None."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith(Q, i):
            end = text.find(Q, i + len(Q))
            if end < 0:
                return None
            out.append(json.dumps(text[i + len(Q):end], ensure_ascii=False))
            i = end + len(Q)
        elif c == '"':
            try:
                s, end = json.JSONDecoder().raw_decode(text, i)
            except json.JSONDecodeError:
                return None
            out.append(json.dumps(s, ensure_ascii=False))
            i = end
        elif c in "{}[],: \t\n":
            out.append(c)
            i += 1
        else:
            m = _WORD.match(text, i)
            if not m:
                return None
            word, i = m.group(0), m.end()
            j = i
            while j < n and text[j] in " \t\n":
                j += 1
            key = j < n and text[j] == ":"
            out.append(json.dumps(word) if key else word)
    result = "".join(out)
    try:
        return dumps(json.loads(result))
    except json.JSONDecodeError:
        return None


def gemma_value(v) -> str:
    if isinstance(v, str):
        return Q + v + Q
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{gemma_value(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, list):
        return "[" + ",".join(gemma_value(x) for x in v) + "]"
    return json.dumps(v)


class Gemma4(Family):
    name = "gemma4"
    think = ("<|channel>thought", "<channel|>")
    call_open, call_close = "<|tool_call>call:", "<tool_call|>"

    @classmethod
    def detect(cls, src):
        return "'<|tool_call>call:'" in src

    def call(self, seg, partial, tools):
        brace = seg.find("{")
        if brace < 0:
            return None
        name = seg[:brace].strip()
        if partial:
            return Call(name, "")            # the arguments come whole, when the call closes
        args = gemma_json(seg[brace:].strip())
        return Call(name, args if args is not None else dumps({}))

    def json_parts(self, name: str) -> tuple[str, str]:
        """The grammar's text around a call's JSON arguments (which Gemma's syntax reads too)."""
        return self.call_open + name, self.call_close

    def write(self, name, args, index=0, call_id=""):
        return f"{self.call_open}{name}{gemma_value(args)}{self.call_close}"

    def join(self, calls):
        return "".join(calls)
