"""MiniMax-M3's tool calls (llama.cpp common/parsers/minimax-m3.cpp): every tag carries the namespace
token `]<]minimax[>[`, and a parameter's name is its tag:

    NS<tool_call>\\nNS<invoke name="NAME">NS<city>Paris NS</city>NS<days>2NS</days>NS</invoke>\\n...NS</tool_call>

Values are expanded by the tool's schema as the template's to_xml() writes them: a value that may be a
string is the raw text up to its closing tag, an object is one element per property, an array one
`NS<item>` element per item, a union the first alternative that reads; any other value is JSON.
Reasoning is `<mm:think>...</mm:think>`; a turn without reasoning opens with a bare `</mm:think>`."""
from __future__ import annotations

import json

from .argschema import kind, may_be_string, properties, tagged_value, tool_params
from .families import Family, _object_text
from .scan import Call
from .tagged import ThinkTurn

NS = "]<]minimax[>["
THINK_END = "</mm:think>"


def _skip(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in " \t\r\n":
        pos += 1
    return pos


def _close_of(tag: str) -> str:
    return f"{NS}</{tag}>"


def read_value(s: str, pos: int, schema, root, close: str):
    """(value, position after `close`) of the value at `pos`, or None (not whole yet, or not of
    this schema). `schema` None: no schema says, the markup does."""
    k, arg = kind(schema, root) if schema is not None else ("any", None)
    while k == "ref":
        schema, seen = arg
        k, arg = kind(schema, root, seen)
    if k == "json" and "type" not in schema:        # {}: any value, the markup says which
        k = "any"
    if schema is not None and may_be_string(schema, root):
        e = s.find(close, pos)
        return (s[pos:e], e + len(close)) if e >= 0 else None
    if k == "anyof":
        return next((got for got in (read_value(s, pos, alt, root, close) for alt in arg) if got), None)
    nested = s.startswith(NS + "<", _skip(s, pos)) and not s.startswith(NS + "</", _skip(s, pos))
    if k == "any" and nested:
        k = "array" if s.startswith(f"{NS}<item>", _skip(s, pos)) else "object"
    if k == "object" and (nested or s.startswith(close, _skip(s, pos))):
        return _members(s, pos, arg, root, close)
    if k == "array" and (nested or s.startswith(close, _skip(s, pos))):
        return _items(s, pos, arg if isinstance(arg, dict) else None, root, close)
    e = s.find(close, pos)
    if e < 0:
        return None
    if k == "any":
        return tagged_value(s[pos:e], None, root), e + len(close)
    try:
        return json.loads(s[pos:e]), e + len(close)
    except json.JSONDecodeError:
        return None


def _element(s: str, pos: int):
    """(tag, position after `NS<tag>`) of the element opening at `pos` (after whitespace), or None."""
    pos = _skip(s, pos)
    if not s.startswith(NS + "<", pos) or s.startswith(NS + "</", pos):
        return None
    gt = s.find(">", pos + len(NS) + 1)
    return (s[pos + len(NS) + 1:gt], gt + 1) if gt >= 0 else None


def _members(s, pos, props, root, close):
    out = {}
    while True:
        if s.startswith(close, _skip(s, pos)):
            return out, _skip(s, pos) + len(close)
        el = _element(s, pos)
        got = el and read_value(s, el[1], props.get(el[0]) if props else None, root, _close_of(el[0]))
        if not got:
            return None
        out[el[0]], pos = got


def _items(s, pos, items, root, close):
    out = []
    while True:
        if s.startswith(close, _skip(s, pos)):
            return out, _skip(s, pos) + len(close)
        el = _element(s, pos)
        got = el and el[0] == "item" and read_value(s, el[1], items, root, _close_of("item"))
        if not got:
            return None
        out.append(got[0])
        pos = got[1]


def to_xml(v) -> str:
    """A value as the template's to_xml() macro writes it."""
    if isinstance(v, dict):
        return "".join(f"{NS}<{k}>{to_xml(x)}{_close_of(k)}" for k, x in v.items() if x is not None)
    if isinstance(v, list):
        return "".join(f"{NS}<item>{to_xml(x)}{_close_of('item')}" for x in v)
    if isinstance(v, bool):
        return json.dumps(v)
    return "" if v is None else str(v)


class MiniMaxM3(ThinkTurn, Family):
    name = "minimax-m3"
    think = ("<mm:think>", THINK_END)
    prefix = "<mm:think>"                # thinking_mode "enabled" opens the reasoning
    bare_think_end = True                # a turn without reasoning opens with </mm:think>
    section_open, section_close = f"{NS}<tool_call>", f"{NS}</tool_call>"
    call_open, call_close = f'{NS}<invoke name="', f"{NS}</invoke>"

    @classmethod
    def detect(cls, src):
        return "]<]minimax[>[" in src and "<tool_call>" in src and "<invoke name=" in src

    def call(self, seg, partial, tools):
        gt = seg.find('">')
        if gt < 0:
            return None
        name = seg[:gt]
        root = tool_params(tools, name)
        props, pairs, pos = properties(root), [], gt + 2
        while (el := _element(seg, pos)) is not None:
            tag, start = el
            close = _close_of(tag)
            got = read_value(seg, start, props.get(tag) if props else None, root, close)
            if got is None and not partial and close in seg[start:]:      # not of its schema: its text
                e = seg.index(close, start)
                got = tagged_value(seg[start:e], None, root), e + len(close)
            if got is None:
                break
            pairs.append((tag, got[0]))
            pos = got[1]
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        return f'{self.call_open}{name}">', f"{NS}<{key}>", _close_of(key), f"{self.call_close}\n"

    def write(self, name, args, index=0, call_id=""):
        return f'{self.call_open}{name}">{to_xml(args)}{self.call_close}\n'

    def join(self, calls):
        return self.section_open + "\n" + "".join(calls) + self.section_close
