"""Cohere Command R7B / Cohere2 MoE turns (llama.cpp common/parsers/cohere2moe.cpp and its Command R7B handling):
`<|START_THINKING|>...<|END_THINKING|>` reasoning, `<|START_TEXT|>` (R7B: `<|START_RESPONSE|>`) content and
`<|START_ACTION|>[{"tool_call_id": "0", "tool_name": NAME, "parameters": {...}}, ...]<|END_ACTION|>` calls."""
from __future__ import annotations

from .families import Family
from .scan import Call, Msg, dumps, held, json_value

THINK = ("<|START_THINKING|>", "<|END_THINKING|>")
TEXTS = (("<|START_TEXT|>", "<|END_TEXT|>"), ("<|START_RESPONSE|>", "<|END_RESPONSE|>"))
ACTION = ("<|START_ACTION|>", "<|END_ACTION|>")
OPENERS = (THINK[0], TEXTS[0][0], TEXTS[1][0], ACTION[0])


class Cohere(Family):
    name = "cohere"
    think = THINK
    prefix = THINK[0]           # Cohere2 MoE's generation prompt opens the thinking

    @classmethod
    def detect(cls, src):
        return "<|START_ACTION|>" in src and ("<|START_TEXT|>" in src or "<|START_RESPONSE|>" in src)

    def markers(self):
        return list(OPENERS)

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        text = (self.prefix if opened else "") + text
        msg, pos = Msg(), 0
        while pos < len(text):
            rest = text[pos:].lstrip()
            pos = len(text) - len(rest)
            opener = next((o for o in OPENERS if rest.startswith(o)), None)
            if opener is None:
                if partial and held(rest, OPENERS) == len(rest):
                    break
                msg.content += rest if not partial else rest[: len(rest) - held(rest, OPENERS)]   # bare text
                break
            close = {THINK[0]: THINK[1], ACTION[0]: ACTION[1], **dict(TEXTS)}[opener]
            start = pos + len(opener)
            stop = text.find(close, start)
            body = text[start:stop] if stop >= 0 else text[start:]
            whole = stop >= 0 or not partial
            if not whole:
                body = body[: len(body) - held(body, [close])]
            if opener == ACTION[0]:
                msg.calls += self._calls(body, not whole)
            elif opener == THINK[0] and keep_reasoning:
                msg.reasoning += body.strip() if whole else body.lstrip().rstrip()
            else:
                msg.content += body if whole else body.rstrip()
            if stop < 0:
                break
            pos = stop + len(close)
        return msg

    @staticmethod
    def _calls(body: str, partial: bool) -> list[Call]:
        s = body.strip()
        if not s.startswith("["):
            return []
        out, pos = [], 1
        while True:
            while pos < len(s) and s[pos] in " \t\r\n,":
                pos += 1
            got = json_value(s, pos)
            if got is None or not isinstance(got[0], dict):
                return out                   # a call comes whole, when its object closes
            v, pos = got
            if isinstance(v.get("tool_name"), str):
                out.append(Call(v["tool_name"], dumps(v.get("parameters", {})), str(v.get("tool_call_id", "")), True))

    def json_parts(self, name: str) -> tuple[str, str]:
        return f'{ACTION[0]}[{{"tool_call_id": "0", "tool_name": {dumps(name)}, "parameters": ', f"}}]{ACTION[1]}"

    def write(self, name, args, index=0, call_id=""):
        return dumps({"tool_call_id": str(index), "tool_name": name, "parameters": args})

    def join(self, calls):
        return ACTION[0] + "[" + ", ".join(calls) + "]" + ACTION[1]
