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

A value may hold its closing tag or the call's (tagvalues.ValueClose: where a value ends, as llama.cpp reads it).

Values are raw text when the tool's schema allows a string, else JSON (argschema.tagged_value).
"""
from __future__ import annotations

import re

from .argschema import tool_params
from .families import Family, Glm45, Qwen3Coder, _object_text
from .scan import Call, Msg, dumps, held, split_reasoning
from .tagvalues import ValueClose


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
        self.value_follows = (self.tags[0], self.call_close)

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
        pairs, _ = self.tag_pairs(seg, i + len(self.sep), self.tags, tool_params(tools, name), partial)
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
    value_follows = ("<parameter=", "</function>", "</seed:tool_call>")
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
        pairs, pos = self.tag_pairs(s, gt + 1, self.TAGS, tool_params(tools, name), partial)
        return Call(name, _object_text(pairs, not partial or s[pos:].lstrip().startswith("</function>")))

    def xml_parts(self, name, key, string):
        return (f"<seed:tool_call>\n<function={name}>\n", f"<parameter={key}>", "</parameter>\n",
                "</function>\n</seed:tool_call>")

    def write(self, name, args, index=0, call_id=""):
        head, _, _, tail = self.xml_parts(name, "", True)
        params = "".join(f"<parameter={k}>{v if isinstance(v, str) else dumps(v)}</parameter>\n" for k, v in args.items())
        return head + params + tail

    def join(self, calls):
        return "\n".join(calls)


class Ling3(ThinkTurn, Glm45):
    name = "ling3"
    prefix = "<think>"
    think_stops = ("<tool_call>",)
    turn_end = "<|role_end|>"

    @classmethod
    def detect(cls, src):
        return "<role>ASSISTANT</role>" in src and "<arg_key>" in src


class Qwen3CoderThinking(ThinkTurn, Qwen3Coder):
    """Qwen3-Coder's calls in a template that thinks (llama.cpp: the template has `<think>`)."""
    prefix = "<think>\n"
    think_stops = ("<tool_call>",)

    @classmethod
    def detect(cls, src):
        return Qwen3Coder.detect(src) and "<think>" in src
