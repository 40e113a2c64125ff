"""gpt-oss's harmony format (llama.cpp common/parsers/gpt-oss.cpp): a turn is messages
`<|start|>assistant<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY<|end|>`;
analysis is reasoning, final (and commentary without a recipient) is content, a
`to=functions.NAME` recipient is a call whose body is its JSON arguments. The generation
prompt already wrote the first `<|start|>assistant`; `<|call|>` and `<|return|>` end the
generation (llama.cpp's end-of-generation tokens), so they never reach the text.
"""
from __future__ import annotations

import re

from .families import Family, raw_args
from .scan import Call, Msg, dumps, held

START, MESSAGE, END = "<|start|>", "<|message|>", "<|end|>"
_ENDS = (END, "<|call|>", "<|return|>", START)
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z0-9_-]+)")
_RECIPIENT = re.compile(r"\bto=([^\s<]+)")


class Harmony(Family):
    name = "gpt-oss"
    think = ("<|channel|>analysis<|message|>", END)
    prefix = "<|start|>assistant"

    @classmethod
    def detect(cls, src):
        return "<|channel|>" in src

    def markers(self):
        return [START]

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        s = (self.prefix if opened else "") + text
        msg, pos = Msg(), 0
        while pos < len(s):
            st = s.find(START, pos)
            head_at = st + len(START) if st == pos else pos
            mi = s.find(MESSAGE, head_at)
            if mi < 0:
                if not partial and s[head_at:].strip():
                    msg.content += s[head_at:].strip()      # text outside any message: content
                break
            header = s[head_at:mi]
            ends = [i for i in (s.find(e, mi + len(MESSAGE)) for e in _ENDS) if i >= 0]
            stop = min(ends) if ends else -1
            body = s[mi + len(MESSAGE):stop] if stop >= 0 else s[mi + len(MESSAGE):]
            whole = stop >= 0 or not partial
            if not whole:
                body = body[: len(body) - held(body, _ENDS)]
            channel = (_CHANNEL.search(header) or [None, ""])[1]
            recipient = (_RECIPIENT.search(header) or [None, ""])[1]
            if recipient.startswith("functions."):
                args, _ = raw_args(body, not whole)
                msg.calls.append(Call(recipient[len("functions."):], args, done=whole))
            elif channel == "analysis" and keep_reasoning:
                msg.reasoning += body if whole else body.rstrip()
            else:
                msg.content += body if whole else body.rstrip()
            if stop < 0:
                break
            pos = stop + (len(END) if s.startswith(END, stop) else 0)
            if s.startswith(START, pos):
                continue
            if s.startswith(("<|call|>", "<|return|>"), pos):
                pos = s.find(">", pos) + 1
        msg.reasoning = msg.reasoning.strip()
        return msg

    def write(self, name, args, index=0, call_id=""):
        return f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{dumps(args)}"

    def join(self, calls):
        return calls[0]
