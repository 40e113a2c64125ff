"""LFM2 / LFM2.5 (Liquid, 8B-A1B MoE) tool calls (llama.cpp common/parsers/lfm2.cpp): a Python-style list of
calls between markers, `<|tool_call_start|>[get_weather(city="Paris", days=2)]<|tool_call_end|>`; the values
are Python or JSON literals. Read with Python's own parser (literals only, nothing is evaluated)."""
from __future__ import annotations

import ast

from .families import Family
from .scan import Call, dumps, settled

START, END = "<|tool_call_start|>", "<|tool_call_end|>"
_JSON_NAMES = {"true": True, "false": False, "null": None}


def _literal(node):
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.List):
        return [_literal(x) for x in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def python_calls(text: str) -> list[Call] | None:
    """`[f(a=1), g(b="x")]` as calls, or None when it is not that."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        items = tree.elts if isinstance(tree, ast.List) else [tree]
        out = []
        for it in items:
            if not isinstance(it, ast.Call) or it.args:
                return None
            name = ast.unparse(it.func)
            out.append(Call(name, dumps({k.arg: _literal(k.value) for k in it.keywords}), done=True))
        return out
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None


class Lfm2(Family):
    name = "lfm2"
    call_open, call_close = START, END
    raw_strings = False           # the grammar writes string values as (JSON = Python) string literals

    @classmethod
    def detect(cls, src):
        return "<|tool_list_start|>" in src or "List of tools: [" in src

    def parse(self, body, partial, tools):
        i = body.find(START)
        if i < 0:
            return settled(body, [START], partial), [], "", False
        content, calls, pos = body[:i].rstrip(), [], i
        while body.startswith(START, pos):
            e = body.find(END, pos)
            if e < 0:
                break                   # the calls come whole, when their list closes
            got = python_calls(body[pos + len(START):e])
            if got is None:
                return body if not partial else content, [], "", False
            calls += got
            pos = e + len(END)
            pos += len(body[pos:]) - len(body[pos:].lstrip())
        post = body[pos:].strip() if not partial and not body.startswith(START, pos) else ""
        return content, calls, post, False

    def xml_parts(self, name, key, string):
        return f"{START}[{name}(", f"{key}=", ", ", f")]{END}"

    def write(self, name, args, index=0, call_id=""):
        kw = ", ".join(f"{k}={dumps(v)}" for k, v in args.items())
        return f"{START}[{name}({kw})]{END}"

    def join(self, calls):
        return "".join(calls)
