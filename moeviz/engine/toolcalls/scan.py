"""Pieces every output parser uses.

A parser reads the whole output so far, `partial` while generation goes on. A partial
parse must be a prefix of the final one (stream.py sends only what was added): text that
could still turn out to be the start of a marker, or whitespace a marker would strip, is
held back until the next tokens decide it.
"""
from __future__ import annotations

import dataclasses
import json
import re

_DECODER = json.JSONDecoder()


@dataclasses.dataclass
class Call:
    name: str
    args: str = ""              # the arguments' JSON text so far (the whole of it once `done`)
    id: str = ""                # the model's own id (Kimi K2, Mistral), else "" (the stream assigns one)
    done: bool = False


@dataclasses.dataclass
class Msg:
    content: str = ""
    reasoning: str = ""
    calls: list[Call] = dataclasses.field(default_factory=list)


def held(text: str, markers) -> int:
    """Characters at the end of `text` that begin one of `markers` (held back while partial)."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


def settled(text: str, markers, partial: bool) -> str:
    """`text` less what the next tokens may still change: a marker's beginning and
    trailing whitespace (stripped before a call)."""
    if not partial:
        return text
    text = text[: len(text) - held(text, markers)]
    return text.rstrip()


def json_value(text: str, at: int = 0):
    """(value, end) of the JSON value starting at `at` (after whitespace), or None if it is
    not complete (yet)."""
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    try:
        return _DECODER.raw_decode(text, at)
    except (json.JSONDecodeError, ValueError):
        return None


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


_NAME_FIRST = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')
_TYPED_NAME_FIRST = re.compile(r'\{\s*"type"\s*:\s*"function"\s*,\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,'
                               r'\s*"(?:arguments|parameters)"\s*:\s*')


def json_call(seg: str, partial: bool) -> tuple[Call | None, int]:
    """A `{"name": ..., "arguments": {...}}` object at the start of `seg` (after whitespace):
    (call or None while its name is unknown, end of the object or -1). While partial, the
    arguments stream as the raw JSON text written so far; once whole they are that text."""
    s = seg.lstrip()
    skip = len(seg) - len(s)
    m = _NAME_FIRST.match(s) or _TYPED_NAME_FIRST.match(s)
    whole = json_value(s)
    if whole is not None and isinstance(whole[0], dict) and isinstance(whole[0].get("name"), str):
        value, end = whole
        args = value.get("arguments", value.get("parameters", {}))
        if isinstance(args, str):
            text = args
        elif m:
            got = json_value(s, m.end())
            text = s[m.end():got[1]].strip() if got else dumps(args)
        else:
            text = dumps(args)
        return Call(value["name"], text, value.get("id") if isinstance(value.get("id"), str) else "", True), skip + end
    if not m:
        return None, -1
    try:
        name = json.loads(f'"{m.group(1)}"')
    except json.JSONDecodeError:
        return None, -1
    raw = s[m.end():].lstrip()
    if not partial:
        return Call(name, raw.strip()), len(seg)
    got = json_value(s, m.end())
    if got is not None:                       # the arguments are whole; the object is not closed yet
        return Call(name, "" if isinstance(got[0], str) else s[m.end():got[1]].strip()), -1
    return Call(name, raw.rstrip() if raw.startswith("{") else ""), -1


def typed_value(raw: str, schema: dict | None):
    """An XML-style parameter value (Qwen3-Coder, GLM-4.5) as JSON: text for string
    parameters, else the JSON it spells (text when it is none)."""
    kind = (schema or {}).get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind and len(kind) == 1):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def param_schema(tools, name: str, param: str) -> dict | None:
    for t in tools or ():
        fn = t["function"]
        if fn["name"] == name:
            return (fn.get("parameters") or {}).get("properties", {}).get(param)
    return None


def split_reasoning(text: str, start: str, end: str, open_: bool, partial: bool) -> tuple[str, str, bool]:
    """(reasoning, rest, pending) of an output that may open with `start` ... `end`
    (`open_`: the prompt already opened it). pending: it may still become reasoning."""
    s = text
    if not open_:
        t = s.lstrip()
        if t.startswith(start):
            s = t[len(start):]
        elif partial and t and start.startswith(t):
            return "", "", True
        elif partial and not t:
            return "", "", True
        else:
            return "", s, False
    i = s.find(end)
    if i < 0:
        body = s[: len(s) - held(s, [end])] if partial else s
        return (body.strip() if not partial else body.lstrip().rstrip()), "", partial
    return s[:i].strip(), s[i + len(end):].lstrip(), False
