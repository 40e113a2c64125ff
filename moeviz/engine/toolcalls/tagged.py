"""XML-tagged tool calls whose families read the whole turn or need llama.cpp's own tags:

- Tencent Hy3 (llama.cpp's autoparser on its template): `<tool_calls:opensource>\\n<tool_call:opensource>NAME
  <tool_sep:opensource>\\n<arg_key:opensource>K</arg_key:opensource>\\n<arg_value:opensource>V</arg_value:opensource>
  \\n...</tool_call:opensource>\\n</tool_calls:opensource>`, reasoning in `<think:opensource>`.
- ByteDance Seed-OSS (autoparser): `<seed:tool_call>\\n<function=NAME>\\n<parameter=K>V</parameter>\\n...
  </function>\\n</seed:tool_call>` per call, reasoning in `<seed:think>`.
- Ling 3.0 / Bailing V3 (common/parsers/ling3.cpp): GLM-4.5's calls; the prompt opens `<think>`, and a call
  ends the reasoning as `</think>` does; `<|role_end|>` ends the turn.
- Qwen3-Coder's calls in thinking templates (Qwen3.5, StepFun 3.5 Flash, Nemotron 3 Nano;
  common/parsers/qwen3-coder.cpp): a `<tool_call>` ends an opened reasoning too.
- poolside Laguna (autoparser): GLM-4.5's calls.

A call ends at its closing tag past its values' own closing tags (a value may hold the call's).

Values are raw text when the tool's schema allows a string, else JSON (argschema.tagged_value).
"""
from __future__ import annotations

import re

from .argschema import properties, tagged_value, tool_params
from .families import Family, Glm45, Qwen3Coder, _object_text
from .scan import Call, Msg, dumps, held, split_reasoning


def tag_pairs(seg: str, pos: int, tags: tuple[str, str, str, str], root) -> tuple[list, int]:
    """The (key, value) pairs written `KEY_OPEN k KEY_CLOSE VALUE_OPEN v VALUE_CLOSE` from `pos` on
    (whole ones only), and where they end."""
    key_open, key_close, value_open, value_close = tags
    props, pairs = properties(root), []
    while True:
        o = seg.find(key_open, pos)
        k = seg.find(key_close, o + len(key_open)) if o >= 0 else -1
        v = seg.find(value_open, k + len(key_close)) if k >= 0 else -1
        e = seg.find(value_close, v + len(value_open)) if v >= 0 else -1
        if e < 0:
            return pairs, pos
        key = seg[o + len(key_open):k].strip()
        pairs.append((key, tagged_value(seg[v + len(value_open):e], props.get(key), root)))
        pos = e + len(value_close)


class ValueClose:
    """A call's closing tag is looked for past its values (`value_tags`: a value's opening and
    closing tag): a string, or a JSON value's string, may hold it, and llama.cpp reads a value
    up to its own closing tag."""
    value_tags = ("<arg_value>", "</arg_value>")

    def _close_at(self, body: str, k: int) -> int:
        value_open, value_close = self.value_tags
        while True:
            c, o = body.find(self.call_close, k), body.find(value_open, k)
            if c < 0 or o < 0 or c < o:
                return c
            e = body.find(value_close, o + len(value_open))
            if e < 0:
                return -1
            k = e + len(value_close)


class ThinkTurn:
    """A family that reads the whole turn (stream.parse_message's hook): reasoning ends at its closing
    tag or, when the prompt opened it, at any of `think_stops` (a call's start: llama.cpp's
    thinking_end_tags); the rest is the family's content and calls. `turn_end`: an end-of-turn
    marker the model may spell out as text, cut off. `prefix`: what the prompt ends in when it
    opened the reasoning (render.plan_chat)."""
    think_stops: tuple[str, ...] = ()
    turn_end = ""
    bare_think_end = False              # a turn may open with the closing tag alone (no reasoning)

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        if self.turn_end:
            text = text.split(self.turn_end, 1)[0]
            text = text[: len(text) - held(text, [self.turn_end])] if partial else text
        msg, body = Msg(), text
        start, end = self.think
        if self.bare_think_end and keep_reasoning and not opened:
            t = text.lstrip()
            if partial and t and end.startswith(t) and not start.startswith(t):
                return msg
            opened = t.startswith(end)
        if keep_reasoning and opened:
            hits = sorted((i, m) for m in (end, *self.think_stops) if (i := text.find(m)) >= 0)
            if not hits:
                msg.reasoning = (text[: len(text) - held(text, [end, *self.think_stops])] if partial else text).strip()
                return msg
            i, m = hits[0]
            msg.reasoning, body = text[:i].strip(), text[i + len(m) if m == end else i:].lstrip()
        elif keep_reasoning:
            msg.reasoning, body, pending = split_reasoning(text, start, end, False, partial)
            if pending:
                return msg
        if not tools:                        # no tools: nothing is read as a call (as llama.cpp)
            msg.content = body
            return msg
        msg.content, msg.calls, post, _ = self.parse(body, partial, tools)
        if post:
            msg.content = msg.content + "\n" + post if msg.content else post
        return msg


class Hy3(ThinkTurn, ValueClose, Family):
    name = "hy3"

    def __init__(self, tag: str = ":opensource"):
        self.tag = tag
        self.think = (f"<think{tag}>", f"</think{tag}>")
        self.prefix = self.think[0]
        self.section_open, self.section_close = f"<tool_calls{tag}>", f"</tool_calls{tag}>"
        self.call_open, self.call_close = f"<tool_call{tag}>", f"</tool_call{tag}>"
        self.sep = f"<tool_sep{tag}>"
        self.tags = (f"<arg_key{tag}>", f"</arg_key{tag}>", f"<arg_value{tag}>", f"</arg_value{tag}>")
        self.value_tags = self.tags[2:]

    @classmethod
    def detect(cls, src):
        return "hy_Assistant" in src and "tool_sep" in src and "arg_key" in src

    @classmethod
    def from_template(cls, src: str) -> Hy3:
        m = re.search(r"set\s+HYTK\s*=\s*'([^']*)'", src)
        return cls(m.group(1) if m else ":opensource")

    def call(self, seg, partial, tools):
        i = seg.find(self.sep)
        if i < 0:
            return None
        name = seg[:i].strip()
        pairs, _ = tag_pairs(seg, i + len(self.sep), self.tags, tool_params(tools, name))
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        k_open, k_close, v_open, v_close = self.tags
        return (f"{self.call_open}{name}{self.sep}\n", f"{k_open}{key}{k_close}\n{v_open}", f"{v_close}\n",
                f"{self.call_close}\n")

    def write(self, name, args, index=0, call_id=""):
        head, _, _, tail = self.xml_parts(name, "", True)
        pairs = (self.xml_parts(name, k, True)[1:3] + (v if isinstance(v, str) else dumps(v),) for k, v in args.items())
        return head + "".join(open_ + value + close for open_, close, value in pairs) + tail

    def join(self, calls):
        return self.section_open + "\n" + "".join(calls) + self.section_close


class SeedOss(ValueClose, Family):
    name = "seed-oss"
    value_tags = ("<parameter=", "</parameter>")
    think = ("<seed:think>", "</seed:think>")
    call_open, call_close = "<seed:tool_call>", "</seed:tool_call>"
    TAGS = ("<parameter=", ">", "", "</parameter>")

    @classmethod
    def detect(cls, src):
        return "<seed:tool_call>" in src and "<function=" in src

    def call(self, seg, partial, tools):
        s = seg.lstrip()
        gt = s.find(">")
        if not s.startswith("<function=") or gt < 0:
            return None
        name = s[len("<function="):gt]
        pairs, pos = tag_pairs(s, gt + 1, self.TAGS, tool_params(tools, name))
        return Call(name, _object_text(pairs, not partial or "</function>" in s[pos:]))

    def xml_parts(self, name, key, string):
        return (f"<seed:tool_call>\n<function={name}>\n", f"<parameter={key}>", "</parameter>\n",
                "</function>\n</seed:tool_call>")

    def write(self, name, args, index=0, call_id=""):
        head, _, _, tail = self.xml_parts(name, "", True)
        params = "".join(f"<parameter={k}>{v if isinstance(v, str) else dumps(v)}</parameter>\n" for k, v in args.items())
        return head + params + tail

    def join(self, calls):
        return "\n".join(calls)


class Ling3(ThinkTurn, ValueClose, Glm45):
    name = "ling3"
    prefix = "<think>"
    think_stops = ("<tool_call>",)
    turn_end = "<|role_end|>"

    @classmethod
    def detect(cls, src):
        return "<role>ASSISTANT</role>" in src and "<arg_key>" in src


class Qwen3CoderThinking(ThinkTurn, ValueClose, Qwen3Coder):
    """Qwen3-Coder's calls in a template that thinks (llama.cpp: the template has `<think>`)."""
    prefix = "<think>\n"
    value_tags = ("<parameter=", "</parameter>")
    think_stops = ("<tool_call>",)

    @classmethod
    def detect(cls, src):
        return Qwen3Coder.detect(src) and "<think>" in src


class Laguna(ValueClose, Glm45):
    """poolside Laguna: GLM-4.5's calls (llama.cpp's autoparser, its Laguna patch tolerating whitespace
    between the tags), a value holding `</tool_call>` included."""

    @classmethod
    def detect(cls, src):
        return Glm45.detect(src) and "laguna_glm_thinking" in src
