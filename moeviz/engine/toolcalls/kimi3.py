"""Kimi K3's turns (llama.cpp common/parsers/kimi-k3.cpp): XTML sections built of `<|open|>TAG attrs<|sep|>`
and `<|close|>TAG<|sep|>`. An assistant message is `[think] [response] [tools]` and its closer:

    <|open|>think<|sep|>REASONING<|close|>think<|sep|><|open|>response<|sep|>TEXT<|close|>response<|sep|>
    <|open|>tools<|sep|><|open|>call tool="NAME" index="1"<|sep|>
    <|open|>argument key="K" type="string"<|sep|>V<|close|>argument<|sep|>...<|close|>call<|sep|>...
    <|close|>tools<|sep|><|close|>message<|sep|>

The generation prompt opens the message and its think section (its response section when
thinking is off). An argument is raw text when the tool's schema types it a string (or gives no
type), else JSON; the type attribute decides for a key the schema does not know."""
from __future__ import annotations

from .argschema import properties, tagged_value, tool_params
from .families import Family, _object_text
from .scan import Call, Msg, dumps, held

SEP = "<|sep|>"
MSG_START = '<|open|>message role="assistant"<|sep|>'
THINK, THINK_END = "<|open|>think<|sep|>", "<|close|>think<|sep|>"
RESP, RESP_END = "<|open|>response<|sep|>", "<|close|>response<|sep|>"
TOOLS, TOOLS_END = "<|open|>tools<|sep|>", "<|close|>tools<|sep|>"
CALL, CALL_END = '<|open|>call tool="', "<|close|>call<|sep|>"
ARG, ARG_END = '<|open|>argument key="', "<|close|>argument<|sep|>"
JSON_BLOCK, JSON_END = "<|open|>json", "<|close|>json<|sep|>"
MSG_END, EOM = "<|close|>message<|sep|>", "<|end_of_msg|>"


def _attr(text: str) -> str:
    """An attribute value as the template escapes it (escape_attr), unescaped."""
    return text.replace("&quot;", '"').replace("&amp;", "&")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;")


def _xtml_type(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if v is None:
        return "null"
    return {int: "number", float: "number", str: "string", dict: "object"}.get(type(v), "array")


class KimiK3(Family):
    name = "kimi-k3"
    think = (THINK, THINK_END)
    prefix = THINK                      # the prompt ends in it when thinking is on

    @classmethod
    def detect(cls, src):
        return "<|open|>" in src and "<|close|>" in src and "<|end_of_msg|>" in src

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        # llama.cpp parses the generation prompt's tail and the output together
        s, msg = (THINK if opened else RESP) + text, Msg()
        pos = len(MSG_START) if s.startswith(MSG_START) else 0
        think = s.startswith(THINK, pos)
        if think:
            pos += len(THINK)
        body, pos, closed = self._until(s, pos, (THINK_END, RESP), partial)
        if think and keep_reasoning:
            msg.reasoning = body
        elif think:
            msg.content = body
        if closed and s.startswith(THINK_END, pos):
            pos += len(THINK_END)
        if closed and s.startswith(RESP, pos):
            pos += len(RESP)
        elif closed and partial and RESP.startswith(s[pos:]):
            return msg                   # the response section may be opening
        if closed:
            body, pos, closed = self._until(s, pos, (RESP_END, TOOLS, MSG_END), partial)
            msg.content += body          # reasoning_format none: the think text, then the response's (as llama.cpp)
        if closed and s.startswith(RESP_END, pos):
            pos += len(RESP_END)
        if closed and tools and s.startswith(TOOLS, pos):
            msg.calls, pos = self._calls(s, pos + len(TOOLS), partial, tools)
        for end in (TOOLS_END, MSG_END, EOM):
            pos += len(end) if s.startswith(end, pos) else 0
        rest = s[pos:].strip()
        if rest and not partial:         # not the format: llama.cpp refuses it, the text is kept
            msg.content = msg.content + "\n" + rest if msg.content else rest
        return msg

    @staticmethod
    def _until(s: str, pos: int, ends, partial: bool) -> tuple[str, int, bool]:
        """(the text up to the first of `ends`, stripped; where that end is; whether one was found)."""
        hits = [i for i in (s.find(e, pos) for e in ends) if i >= 0]
        if hits:
            return s[pos:min(hits)].strip(), min(hits), True
        body = s[pos:]
        if partial:
            body = body[: len(body) - held(body, ends)]
        return body.strip(), len(s), False

    def _calls(self, s: str, pos: int, partial: bool, tools) -> tuple[list[Call], int]:
        calls = []
        while True:
            while pos < len(s) and s[pos] in " \t\r\n":
                pos += 1
            if not s.startswith(CALL, pos):
                return calls, pos
            e = s.find(CALL_END, pos)
            seg = s[pos + len(CALL):e if e >= 0 else len(s)]
            if e < 0 and partial:
                seg = seg[: len(seg) - held(seg, [CALL_END])]
            call = self.call(seg, partial and e < 0, tools)
            if call is None:
                return calls, len(s)
            calls.append(call)
            if e < 0:
                return calls, len(s)
            call.done = True
            pos = e + len(CALL_END)

    def call(self, seg, partial, tools):
        q = seg.find('"')
        sep = seg.find(SEP, q) if q >= 0 else -1
        if sep < 0:
            return None
        name = _attr(seg[:q])
        params = tool_params(tools, name)
        props, pairs, pos = properties(params), [], sep + len(SEP)
        j = seg.find(JSON_BLOCK, pos)
        if j >= 0 and not seg[pos:j].strip():       # arguments as one JSON object (the template's string form)
            g, c = seg.find(SEP, j), seg.find(JSON_END, j)
            if c < 0:
                return Call(name, "")
            return Call(name, seg[g + len(SEP):c].strip() or "{}")
        while True:
            o = seg.find(ARG, pos)
            q = seg.find('"', o + len(ARG)) if o >= 0 else -1
            g = seg.find(SEP, q) if q >= 0 else -1
            c = seg.find(ARG_END, g) if g >= 0 else -1
            if c < 0:
                break
            key = _attr(seg[o + len(ARG):q])
            raw = seg[g + len(SEP):c]
            if key in props:             # llama.cpp: the schema's type, a string when it names none
                kind = props[key].get("type") if isinstance(props[key], dict) else None
                string = not isinstance(kind, str) or kind == "string"
            else:                        # not in the schema: the type attribute says
                string = 'type="string"' in seg[q:g]
            pairs.append((key, raw if string else tagged_value(raw, None, params)))
            pos = c + len(ARG_END)
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        kind = ' type="string"' if string else ""
        return (f'{CALL}{_escape(name)}" index="1"{SEP}', f'{ARG}{_escape(key)}"{kind}{SEP}', ARG_END, CALL_END)

    def write(self, name, args, index=0, call_id=""):
        params = "".join(f'{ARG}{_escape(k)}" type="{_xtml_type(v)}"{SEP}'
                         f'{v if isinstance(v, str) else dumps(v)}{ARG_END}' for k, v in args.items())
        return f'{CALL}{_escape(name)}" index="{index + 1}"{SEP}{params}{CALL_END}'

    def join(self, calls):
        return TOOLS + "".join(calls) + TOOLS_END
