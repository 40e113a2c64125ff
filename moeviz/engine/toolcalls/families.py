"""Tool-call syntaxes of the model families llama.cpp parses (common/chat.cpp and
common/parsers/*), each told apart by its chat template's source as llama.cpp tells them.

A family parses an assistant turn's text after any reasoning (scan.split_reasoning):
content, then its calls. `write` spells one call the family's way (the polyfilled
prompt's example, the grammar's shape, the tests' model output).
"""
from __future__ import annotations

from .scan import Call, dumps, held, json_call, json_value, param_schema, settled, typed_value
from .tagvalues import ValueClose



def raw_args(text: str, partial: bool) -> tuple[str, bool]:
    """Arguments written as raw JSON: (the text so far, whole)."""
    t = text.lstrip()
    got = json_value(t)
    if got is not None and isinstance(got[0], dict):
        return t[:got[1]], True
    if not partial:
        return t.strip() or "{}", False
    return (t.rstrip() if t.startswith("{") else ""), False


class Family:
    name = "generic"
    think = ("<think>", "</think>")     # reasoning tags when the template has them
    call_open = ""                      # what opens a call (or the calls' section)
    call_close: str | None = None
    section_open: str | None = None
    section_close: str | None = None

    @classmethod
    def detect(cls, src: str) -> bool:
        return False

    def markers(self) -> list[str]:
        return [m for m in (self.section_open, self.call_open) if m]

    # Parsing ---------------------------------------------------------------------------
    def parse(self, body: str, partial: bool, tools) -> tuple[str, list[Call], str, bool]:
        """(content, calls, text after the calls, pending): `pending` while the body may
        still turn out to be a call."""
        starts = [i for i in (body.find(m) for m in self.markers()) if i >= 0]
        if not starts:
            return settled(body, self.markers(), partial), [], "", False
        first = min(starts)
        content, pos, calls = body[:first].rstrip(), first, []
        if self.section_open and body.startswith(self.section_open, pos):
            pos += len(self.section_open)
        while True:
            rest = body[pos:]
            ws = len(rest) - len(rest.lstrip())
            pos, rest = pos + ws, rest.lstrip()
            if self.section_close and rest.startswith(self.section_close):
                pos += len(self.section_close)
                break
            if not rest.startswith(self.call_open):
                if partial and held(rest, [self.call_open, self.section_close or self.call_open]) == len(rest):
                    rest = ""
                return content, calls, rest if not partial else "", False
            k = pos + len(self.call_open)
            e = self._close_at(body, k)
            seg = body[k:e] if e >= 0 else body[k:]
            if e < 0 and partial:
                seg = seg[: len(seg) - held(seg, [self.call_close or self.call_open])]
            call = self.call(seg, partial and e < 0, tools)
            if call is None:
                break
            calls.append(call)
            if e < 0:
                pos = len(body)
                break
            call.done = True
            pos = e + (len(self.call_close) if self.call_close else 0)
        post = body[pos:].strip() if not partial else ""
        return content, calls, post, False

    def _close_at(self, body: str, k: int) -> int:
        if self.call_close:
            return body.find(self.call_close, k)
        return body.find(self.call_open, k)

    def call(self, seg: str, partial: bool, tools) -> Call | None:
        raise NotImplementedError

    # Writing ---------------------------------------------------------------------------
    def write(self, name: str, args: dict, index: int = 0, call_id: str = "") -> str:
        raise NotImplementedError

    def join(self, calls: list[str]) -> str:
        text = "".join(calls)
        return (self.section_open or "") + text + (self.section_close or "")


class Hermes(Family):
    """Hermes 2 Pro / Qwen 2.5 / Qwen3: <tool_call>{"name": ..., "arguments": {...}}</tool_call>."""
    name = "hermes"
    call_open, call_close = "<tool_call>", "</tool_call>"

    @classmethod
    def detect(cls, src):
        return "<tool_call>" in src

    def call(self, seg, partial, tools):
        return json_call(seg, partial)[0]

    def write(self, name, args, index=0, call_id=""):
        return f'<tool_call>\n{{"name": {dumps(name)}, "arguments": {dumps(args)}}}\n</tool_call>'

    def join(self, calls):
        return "\n".join(calls)


class Qwen3Coder(ValueClose, Hermes):
    """Qwen3-Coder / Qwen3.5 / Nemotron Nano 3: <tool_call><function=NAME><parameter=K>V</parameter>..."""
    name = "qwen3-coder"
    value_tags = ("<parameter=", "</parameter>")
    value_follows = ("<parameter=", "</function>", "</tool_call>")

    @classmethod
    def detect(cls, src):
        return "<tool_call>" in src and "<function=" in src and "<parameter=" in src

    def call(self, seg, partial, tools):
        s = seg.lstrip()
        if not s.startswith("<function="):
            return None
        gt = s.find(">")
        if gt < 0:
            return None
        name = s[len("<function="):gt]
        pairs, pos = [], gt + 1
        while True:
            o = s.find("<parameter=", pos)
            if o < 0:
                break
            g = s.find(">", o)
            c = self.value_end(s, g + 1, partial) if g >= 0 else -1
            if c < 0:
                break
            key = s[o + len("<parameter="):g]
            value = s[g + 1:c]
            value = value[1:] if value.startswith("\n") else value
            value = value[:-1] if value.endswith("\n") else value
            pairs.append((key, typed_value(value, param_schema(tools, name, key))))
            pos = c + len("</parameter>")
        done = not partial or s[pos:].lstrip().startswith("</function>")     # not one inside a value
        return Call(name, _object_text(pairs, done), done=done)

    def xml_parts(self, name, key, string):
        """(call head, a parameter's opening and closing text, call tail): the grammar's pieces."""
        return f"<tool_call>\n<function={name}>\n", f"<parameter={key}>\n", "\n</parameter>\n", "</function>\n</tool_call>"

    def write(self, name, args, index=0, call_id=""):
        params = "".join(f"<parameter={k}>\n{v if isinstance(v, str) else dumps(v)}\n</parameter>\n"
                         for k, v in args.items())
        return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _object_text(pairs, done: bool) -> str:
    """Arguments built one parameter at a time: each partial text begins the next."""
    text = "{" + ", ".join(f"{dumps(k)}: {dumps(v)}" for k, v in pairs)
    return text + "}" if done else text


class Glm45(ValueClose, Hermes):
    """GLM-4.5 / 4.6 / 4.7: <tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>...</tool_call>."""
    name = "glm-4.5"

    @classmethod
    def detect(cls, src):
        return "<tool_call>" in src and "<arg_key>" in src

    def call(self, seg, partial, tools):
        k = seg.find("<arg_key>")
        head = (seg if k < 0 else seg[:k]).lstrip()
        if k < 0 and partial and "\n" not in head:
            return None                      # the name may go on
        name = head.split("\n", 1)[0].strip()
        if not name:
            return None
        pairs, pos = [], k if k >= 0 else len(seg)
        while k >= 0:
            ke = seg.find("</arg_key>", pos)
            vo = seg.find("<arg_value>", ke) if ke >= 0 else -1
            ve = self.value_end(seg, vo + len("<arg_value>"), partial) if vo >= 0 else -1
            if ve < 0:
                break
            key = seg[pos + len("<arg_key>"):ke].strip()
            raw = seg[vo + len("<arg_value>"):ve]
            pairs.append((key, typed_value(raw, param_schema(tools, name, key))))
            pos = seg.find("<arg_key>", ve)
            if pos < 0:
                break
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        return f"<tool_call>{name}\n", f"<arg_key>{key}</arg_key>\n<arg_value>", "</arg_value>\n", "</tool_call>"

    def write(self, name, args, index=0, call_id=""):
        kv = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v if isinstance(v, str) else dumps(v)}</arg_value>\n"
                     for k, v in args.items())
        return f"<tool_call>{name}\n{kv}</tool_call>"


class MiniMaxM2(Family):
    """MiniMax-M2: <minimax:tool_call><invoke name="NAME"><parameter name="K">V</parameter>...</invoke>
    ...</minimax:tool_call> (several invokes in one section)."""
    name = "minimax-m2"
    section_open, section_close = "<minimax:tool_call>", "</minimax:tool_call>"
    call_open, call_close = '<invoke name="', "</invoke>"

    @classmethod
    def detect(cls, src):
        return "<minimax:tool_call>" in src

    def call(self, seg, partial, tools):
        gt = seg.find('">')
        if gt < 0:
            return None
        name, pairs, pos = seg[:gt], [], gt + 2
        while True:
            o = seg.find('<parameter name="', pos)
            g = seg.find('">', o) if o >= 0 else -1
            c = seg.find("</parameter>", g) if g >= 0 else -1
            if c < 0:
                break
            key = seg[o + len('<parameter name="'):g]
            pairs.append((key, typed_value(seg[g + 2:c].strip("\n"), param_schema(tools, name, key))))
            pos = c + len("</parameter>")
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        return f'<invoke name="{name}">\n', f'<parameter name="{key}">', "</parameter>\n", "</invoke>\n"

    def write(self, name, args, index=0, call_id=""):
        params = "".join(f'<parameter name="{k}">{v if isinstance(v, str) else dumps(v)}</parameter>\n'
                         for k, v in args.items())
        return f'<invoke name="{name}">\n{params}</invoke>\n'

    def join(self, calls):
        return self.section_open + "\n" + "".join(calls) + self.section_close


class DeepSeekDsml(MiniMaxM2):
    """DeepSeek V3.2 / V4: <｜DSML｜function_calls> (V4: tool_calls) of <｜DSML｜invoke name="NAME">
    <｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>...</｜DSML｜invoke>; string="false"
    values are JSON."""
    name = "deepseek-dsml"
    D = "｜DSML｜"

    def __init__(self, block: str = "function_calls"):
        self.section_open, self.section_close = f"<{self.D}{block}>", f"</{self.D}{block}>"
        self.call_open, self.call_close = f'<{self.D}invoke name="', f"</{self.D}invoke>"

    @classmethod
    def detect(cls, src):
        return "dsml_token" in src and "DSML" in src

    def call(self, seg, partial, tools):
        gt = seg.find('">')
        if gt < 0:
            return None
        name, pairs, pos = seg[:gt], [], gt + 2
        open_, close = f'<{self.D}parameter name="', f"</{self.D}parameter>"
        while True:
            o = seg.find(open_, pos)
            g = seg.find(">", o) if o >= 0 else -1
            c = seg.find(close, g) if g >= 0 else -1
            if c < 0:
                break
            head = seg[o + len(open_):g]           # K" string="true
            key = head.split('"', 1)[0]
            raw = seg[g + 1:c]
            pairs.append((key, raw if 'string="true"' in head else typed_value(raw, {"type": "json"})))
            pos = c + len(close)
        return Call(name, _object_text(pairs, not partial))

    def xml_parts(self, name, key, string):
        return (f'<{self.D}invoke name="{name}">\n', f'<{self.D}parameter name="{key}" string="{str(string).lower()}">',
                f"</{self.D}parameter>\n", f"</{self.D}invoke>\n")

    def write(self, name, args, index=0, call_id=""):
        params = "".join(f'<{self.D}parameter name="{k}" string="{str(isinstance(v, str)).lower()}">'
                         f'{v if isinstance(v, str) else dumps(v)}</{self.D}parameter>\n' for k, v in args.items())
        return f'<{self.D}invoke name="{name}">\n{params}</{self.D}invoke>\n'


class KimiK2(Family):
    """Kimi K2: <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{...}
    <|tool_call_end|>...<|tool_calls_section_end|>; the id is functions.NAME:IDX."""
    name = "kimi-k2"
    section_open, section_close = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
    call_open, call_close = "<|tool_call_begin|>", "<|tool_call_end|>"

    @classmethod
    def detect(cls, src):
        return "<|tool_calls_section_begin|>" in src and "<|tool_call_begin|>" in src

    def call(self, seg, partial, tools):
        sep = seg.find("<|tool_call_argument_begin|>")
        if sep < 0:
            return None
        head = seg[:sep].strip()
        name = head[len("functions."):] if head.startswith("functions.") else head
        name = name.rsplit(":", 1)[0] if ":" in name else name
        args, _ = raw_args(seg[sep + len("<|tool_call_argument_begin|>"):], partial)
        return Call(name, args, id=head)

    def write(self, name, args, index=0, call_id=""):
        return f"<|tool_call_begin|>functions.{name}:{index}<|tool_call_argument_begin|>{dumps(args)}<|tool_call_end|>"


class DeepSeek(Family):
    """DeepSeek V3 / R1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
    ```json ... ```<｜tool▁call▁end｜>...; V3.1: <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>."""
    name = "deepseek"
    section_open, section_close = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
    call_open, call_close = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"
    SEP = "<｜tool▁sep｜>"

    def __init__(self, fenced: bool = True):
        self.fenced = fenced            # R1 / V3: the arguments in a ```json fence after the name

    @classmethod
    def detect(cls, src):
        return "<｜tool▁calls▁begin｜>" in src

    def call(self, seg, partial, tools):
        i = seg.find(self.SEP)
        if i < 0:
            return None
        head, tail = seg[:i].strip(), seg[i + len(self.SEP):]
        if head == "function" or (self.fenced and head in ("", "function")):
            nl = tail.find("\n")
            if nl < 0:
                return None if partial else Call(tail.strip(), "{}")
            name, tail = tail[:nl].strip(), tail[nl + 1:]
            t = tail.lstrip()
            if t.startswith("```"):
                t = t[3:]
                t = t[4:] if t.startswith("json") else t
            elif partial and "```json".startswith(t):
                return Call(name, "")
            args, _ = raw_args(t, partial)
            return Call(name, args)
        args, _ = raw_args(tail, partial)
        return Call(head, args)

    def write(self, name, args, index=0, call_id=""):
        if self.fenced:
            return f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{dumps(args)}\n```<｜tool▁call▁end｜>"
        return f"<｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{dumps(args)}<｜tool▁call▁end｜>"


def detect(src: str) -> Family:
    """The family of a chat template, tested in llama.cpp's order (most specific first)."""
    from .harmony import Harmony  # noqa: PLC0415 - these import this module
    from .jsonforms import Generic, GigaChat3, Llama3, MiniMaxM1, Mistral
    from .jsonmarks import Apertus, Firefunction, FunctionaryV31, FunctionaryV32
    from .jsontags import GigaChat31, NemotronV2
    from .minicpm5 import MiniCpm5
    from .kimi3 import KimiK3
    from .minimax3 import MiniMaxM3
    from .tagged import Hy3, Ling3, Qwen3CoderThinking, SeedOss
    if Mistral.detect(src):
        return Mistral(args_style="[ARGS]" in src)
    if Harmony.detect(src):
        return Harmony()
    for cls in (FunctionaryV32, KimiK2, KimiK3, Ling3, MiniMaxM3, MiniMaxM2):
        if cls.detect(src):
            return cls()
    from .gemma import Gemma4
    from .cohere import Cohere
    from .lfm2 import Lfm2
    if Cohere.detect(src):
        return Cohere()
    from .solar import Solar
    if Lfm2.detect(src):
        return Lfm2()
    if Solar.detect(src):
        return Solar()
    for cls in (Gemma4, MiniCpm5):
        if cls.detect(src):
            return cls()
    if DeepSeekDsml.detect(src):
        return DeepSeekDsml("function_calls" if "function_calls" in src else "tool_calls")
    if DeepSeek.detect(src):
        return DeepSeek(fenced="```json" in src)
    if Hy3.detect(src):
        return Hy3.from_template(src)
    for cls in (Glm45, Qwen3CoderThinking, Qwen3Coder, SeedOss, NemotronV2, Hermes, MiniMaxM1,
                GigaChat31, GigaChat3, FunctionaryV31, Firefunction, Apertus, Llama3):
        if cls.detect(src):
            return cls()
    return Generic()
