"""Reading a model's output as it streams: reasoning, content and tool calls as events.

The whole output so far is parsed again after every token (a partial parse), and only
what it adds to what was already sent goes out, as llama-server diffs its partial
messages (common_chat_msg_diff). The families' partial parses are prefix-stable, so the
streamed pieces add up to exactly the final message.
"""
from __future__ import annotations

import dataclasses
import logging

from .families import Family
from .jsonforms import Mistral
from .harmony import Harmony
from .request import ParsedMessage, ToolCall, new_call_id
from .scan import Msg, split_reasoning

log = logging.getLogger("moeviz.toolcalls")


@dataclasses.dataclass
class Content:
    text: str


@dataclasses.dataclass
class Reasoning:
    text: str


@dataclasses.dataclass
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclasses.dataclass
class ToolCallArgs:
    index: int
    text: str


def parse_message(family: Family, text: str, partial: bool, tools, *, thinking: bool, opened: bool,
                  keep_reasoning: bool = True, calls_wanted: bool = True) -> Msg:
    """One parse of an assistant turn's text (the model's output after the prompt)."""
    if hasattr(family, "parse_message"):        # whole-turn formats: gpt-oss harmony, Solar Open, Kimi K3, ...
        # tool_choice none: read as without tools, so a call the model writes anyway stays
        # text (as llama.cpp's content-only parse keeps it) instead of vanishing
        msg = family.parse_message(text, partial, tools if calls_wanted else (), opened, keep_reasoning)
        if not calls_wanted:
            msg.calls = []
        return msg
    msg, body = Msg(), text
    if thinking and keep_reasoning:
        msg.reasoning, body, pending = split_reasoning(text, *family.think, opened, partial)
        if pending:
            return msg
    if not calls_wanted:
        msg.content = body
        return msg
    msg.content, msg.calls, post, _pending = family.parse(body, partial, tools)
    if post:
        msg.content = (msg.content + "\n" + post) if msg.content else post
    return msg


class StreamParser:
    """feed(text) -> events for each new piece of output; finish() -> the last events;
    message() -> the whole ParsedMessage (what was streamed, exactly)."""

    def __init__(self, family: Family, tools=(), *, thinking: bool = False, opened: bool = False,
                 keep_reasoning: bool = True, calls_wanted: bool = False, parallel: bool = True):
        self.family, self.tools = family, list(tools or ())
        self.options = dict(thinking=thinking, opened=opened, keep_reasoning=keep_reasoning, calls_wanted=calls_wanted)
        self.parallel = parallel
        # nothing to read out of plain text: pass it through as it comes
        self.plain = not calls_wanted and not (thinking and keep_reasoning) and not hasattr(family, "parse_message")
        self.text = ""
        self.content = ""
        self.reasoning = ""
        self.calls: list[ToolCall] = []
        self._mistral = isinstance(family, Mistral)

    def feed(self, piece: str) -> list:
        if not piece:
            return []
        self.text += piece
        if self.plain:
            self.content += piece
            return [Content(piece)]
        return self._diff(self._parse(True))

    def finish(self) -> list:
        if self.plain:
            return []
        return self._diff(self._parse(False))

    def message(self) -> ParsedMessage:
        return ParsedMessage(self.content, self.reasoning, [dataclasses.replace(c) for c in self.calls])

    def _parse(self, partial: bool) -> Msg:
        msg = parse_message(self.family, self.text, partial, self.tools, **self.options)
        if not self.parallel:
            msg.calls = msg.calls[:1]
        return msg

    def _diff(self, new: Msg) -> list:
        out = []
        for field, kind in (("reasoning", Reasoning), ("content", Content)):
            sent, now = getattr(self, field), getattr(new, field)
            if now.startswith(sent):
                if len(now) > len(sent):
                    out.append(kind(now[len(sent):]))
                    setattr(self, field, now)
            elif not sent.startswith(now):
                log.warning("toolcalls: %s parse of the %s changed what was sent", self.family.name, field)
        for i, c in enumerate(new.calls):
            if not c.name:
                break
            if i == len(self.calls):
                call_id = c.id or new_call_id(9 if self._mistral else 24)
                self.calls.append(ToolCall(c.name, "", call_id))
                out.append(ToolCallStart(i, call_id, c.name))
            sent = self.calls[i]
            if c.args.startswith(sent.arguments):
                if len(c.args) > len(sent.arguments):
                    out.append(ToolCallArgs(i, c.args[len(sent.arguments):]))
                    sent.arguments = c.args
            elif not sent.arguments.startswith(c.args):
                log.warning("toolcalls: %s parse of call %d's arguments changed what was sent", self.family.name, i)
        return out
