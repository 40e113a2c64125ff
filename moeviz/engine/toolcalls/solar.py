"""Upstage Solar Open's turns (its template; llama.cpp reads them with its autoparser): messages
`<|begin|>assistant<|think|>REASONING<|end|>`, `<|begin|>assistant<|content|>TEXT<|end|>` and
`<|begin|>assistant<|tool_calls|><|tool_call:begin|>ID<|tool_call:name|>NAME<|tool_call:args|>{...}<|tool_call:end|>
...<|calls|>`. The generation prompt already wrote the first `<|begin|>assistant`."""
from __future__ import annotations

from .families import Family, raw_args
from .scan import Call, Msg, dumps, held

BEGIN = "<|begin|>assistant"
KINDS = ("<|think|>", "<|content|>", "<|tool_calls|>")
ENDS = ("<|end|>", "<|calls|>", "<|flush|>", BEGIN)
CALL, NAME, ARGS, CALL_END = "<|tool_call:begin|>", "<|tool_call:name|>", "<|tool_call:args|>", "<|tool_call:end|>"


class Solar(Family):
    name = "solar-open"
    think = ("<|think|>", "<|end|>")
    prefix = BEGIN

    @classmethod
    def detect(cls, src):
        return "<|tool_call:begin|>" in src and "<|tool_call:name|>" in src

    def markers(self):
        return [BEGIN, *KINDS]

    def parse_message(self, text: str, partial: bool, tools, opened: bool, keep_reasoning: bool) -> Msg:
        s = (BEGIN if opened else "") + text
        msg, pos = Msg(), 0
        while pos < len(s):
            if s.startswith(BEGIN, pos):
                pos += len(BEGIN)
            kind = next((k for k in KINDS if s.startswith(k, pos)), None)
            if kind is None:
                rest = s[pos:]
                if not partial or not any(k.startswith(rest) or BEGIN.startswith(rest) for k in KINDS):
                    msg.content += rest if not partial else rest[: len(rest) - held(rest, ENDS)]
                break
            pos += len(kind)
            ends = [i for i in (s.find(e, pos) for e in ENDS) if i >= 0]
            stop = min(ends) if ends else -1
            body = s[pos:stop] if stop >= 0 else s[pos:]
            whole = stop >= 0 or not partial
            if not whole:
                body = body[: len(body) - held(body, ENDS + (CALL_END,))]
            if kind == "<|tool_calls|>":
                msg.calls += self._calls(body, not whole)
            elif kind == "<|think|>" and keep_reasoning:
                msg.reasoning += body if whole else body.rstrip()
            else:
                msg.content += body if whole else body.rstrip()
            if stop < 0:
                break
            pos = stop if s.startswith(BEGIN, stop) else stop + next(len(e) for e in ENDS if s.startswith(e, stop))
        msg.reasoning = msg.reasoning.strip()
        return msg

    @staticmethod
    def _calls(body: str, partial: bool) -> list[Call]:
        out = []
        for part in body.split(CALL)[1:]:
            closed = CALL_END in part
            part = part.split(CALL_END)[0]
            if NAME not in part or ARGS not in part:
                break
            call_id, rest = part.split(NAME, 1)
            name, args = rest.split(ARGS, 1)
            text, _ = raw_args(args, partial and not closed)
            out.append(Call(name.strip(), text, call_id.strip(), closed))
        return out

    def json_parts(self, name: str) -> tuple[str, str]:
        return f"{CALL}call-0{NAME}{name}{ARGS}", CALL_END

    def write(self, name, args, index=0, call_id=""):
        return f"{CALL}{call_id or f'call{index:05d}'}{NAME}{name}{ARGS}{dumps(args)}{CALL_END}"

    def join(self, calls):
        # <|calls|> ends the generation (an end-of-generation token): it never reaches the text
        return "<|tool_calls|>" + "".join(calls)
