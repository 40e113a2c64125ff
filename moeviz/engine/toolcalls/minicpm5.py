"""OpenBMB MiniCPM5's turns (llama.cpp common/parsers/minicpm5.cpp):

    <think>REASONING</think> TEXT<function name="NAME"><param name="K">V</param>...</function> ...

The prompt opens `<think>\\n` (thinking off: it writes an empty reasoning and `</think>`). Reasoning runs to
`</think>` with its leading whitespace skipped, its trailing kept; the text after it and its whitespace runs
to the first `<function`, kept as written. A value is the raw text up to `</param>` (or inside
`<![CDATA[...]]>`, which may hold `</param>`) when the tool's schema allows a string, else JSON.
"""
from __future__ import annotations

from .argschema import may_be_string, properties, tagged_value, tool_params
from .families import Family, _object_text
from .scan import Call, Msg, dumps, held, json_value

THINK, THINK_END = "<think>", "</think>"
CALL, CALL_END = '<function name="', "</function>"
PARAM, PARAM_END = '<param name="', "</param>"
CDATA, CDATA_END = "<![CDATA[", "]]>"
_WS = " \t\r\n"


def _skip(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in _WS:
        pos += 1
    return pos


class MiniCpm5(Family):
    name = "minicpm5"
    prefix = THINK + "\n"               # the prompt ends in it when thinking is on

    @classmethod
    def detect(cls, src):
        return "Tool usage guidelines:" in src and '<function name="' in src and '<param name="' in src

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        msg, body = Msg(), text
        if keep_reasoning:
            if not opened:
                t = text.lstrip(_WS)
                if partial and t and THINK.startswith(t):
                    return msg
                opened = t.startswith(THINK)
                body = t[len(THINK):] if opened else text
            if opened:
                i = body.find(THINK_END)
                if i < 0:
                    msg.reasoning = (body[: len(body) - held(body, [THINK_END])] if partial else body).lstrip(_WS)
                    return msg
                msg.reasoning, body = body[:i].lstrip(_WS), body[i + len(THINK_END):].lstrip(_WS)
        if not tools:
            msg.content = body
            return msg
        i = body.find("<function")
        if i < 0:
            msg.content = body[: len(body) - held(body, ["<function"])] if partial else body
            return msg
        msg.content = body[:i]
        msg.calls, end = self._calls(body, i, partial, tools)
        if end >= 0 and not partial and body[end:].strip():
            msg.content = (msg.content + "\n" if msg.content else "") + body[end:].strip()
        return msg

    def _calls(self, s: str, pos: int, partial: bool, tools) -> tuple[list[Call], int]:
        """The calls from `pos` on and where they end (-1: the text ends in one)."""
        calls = []
        while s.startswith(CALL, pos):
            gt = s.find('">', pos)
            if gt < 0:
                return calls, -1
            name = s[pos + len(CALL):gt]
            root = tool_params(tools, name)
            props = properties(root) if root is not None else {}
            pairs, pos = [], _skip(s, gt + 2)
            while s.startswith(PARAM, pos):
                k = s.find('">', pos)
                got = self._value(s, k + 2, props.get(s[pos + len(PARAM):k]), root) if k >= 0 else None
                if got is None:
                    break
                pairs.append((s[pos + len(PARAM):k], got[0]))
                pos = _skip(s, got[1])
            done = s.startswith(CALL_END, pos)
            calls.append(Call(name, _object_text(pairs, done or not partial), done=done))
            if not done:
                return calls, -1
            pos = _skip(s, pos + len(CALL_END))
        return calls, pos

    @staticmethod
    def _value(s: str, pos: int, schema, root):
        """(value, end after `</param>`) of the value at `pos`, or None while it is not whole."""
        if schema is not None and may_be_string(schema, root):
            if s.startswith(CDATA, pos):
                e = s.find(CDATA_END, pos)
                if e < 0 or not s.startswith(PARAM_END, e + len(CDATA_END)):
                    return None
                return s[pos + len(CDATA):e], e + len(CDATA_END) + len(PARAM_END)
            e = s.find(PARAM_END, pos)
            return (s[pos:e], e + len(PARAM_END)) if e >= 0 else None
        got = json_value(s, pos) if schema is not None else None
        if got is not None and s.startswith(PARAM_END, _skip(s, got[1])):
            return got[0], _skip(s, got[1]) + len(PARAM_END)
        e = s.find(PARAM_END, pos)
        return (tagged_value(s[pos:e], schema, root), e + len(PARAM_END)) if e >= 0 else None

    def xml_parts(self, name, key, string):
        return f'{CALL}{name}">', f'{PARAM}{key}">', PARAM_END, CALL_END

    def write(self, name, args, index=0, call_id=""):
        params = "".join(f'{PARAM}{k}">{v if isinstance(v, str) else dumps(v)}{PARAM_END}' for k, v in args.items())
        return f"{CALL}{name}\">{params}{CALL_END}"

    def join(self, calls):
        return "\n".join(calls)
