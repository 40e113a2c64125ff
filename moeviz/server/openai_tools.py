"""Tool calling and reasoning in OpenAI's chat-completion shapes (llama-server's):
the request's messages / tools / tool_choice into a ChatPrompt, the forced-choice
grammar into the run's settings, and the output read back into `message.tool_calls`,
`reasoning_content`, `finish_reason: "tool_calls"` and streamed `delta.tool_calls`.
"""
from __future__ import annotations

from ..engine.toolcalls import (ChatPlan, ChatPrompt, Content, Reasoning, ToolCallArgs, ToolCallStart,
                                ToolRequestError, chat_prompt, plan_chat)
from ..engine.text import PromptError


def chat_prompt_from_body(body: dict) -> ChatPrompt:
    """A /v1/chat/completions body's prompt parts (llama-server's fields included:
    chat_template_kwargs, reasoning_format, reasoning_effort)."""
    return chat_prompt(body.get("messages"), body.get("tools"), body.get("tool_choice"),
                       body.get("parallel_tool_calls"), reasoning_effort=body.get("reasoning_effort"),
                       chat_template_kwargs=body.get("chat_template_kwargs"),
                       reasoning_format=body.get("reasoning_format"))


def plan_for(engine, prompt) -> ChatPlan | None:
    """The chat plan of a request's ChatPrompt on this model (None: not a chat)."""
    if not isinstance(prompt, ChatPrompt):
        return None
    template = engine.info.chat_template
    if not template:
        raise PromptError("this model has no chat template; give a plain-text prompt")
    bos, eos = engine.lm.bos_eos_text()
    return plan_chat(template, prompt, bos, eos)


def apply_plan(req, plan: ChatPlan | None) -> None:
    """A forced tool choice's grammar becomes the run's (a client's own grammar cannot
    stand beside it, as in llama-server)."""
    if plan is None or plan.grammar is None or req.settings.grammar == plan.grammar:
        return
    if req.settings.grammar:
        raise ToolRequestError("a forced tool_choice cannot be combined with 'grammar' or a JSON 'response_format'",
                               "tool_choice")
    req.settings.grammar = plan.grammar


class ChatOutput:
    """One choice's output read as it comes: `feed(text)` / `finish()` give the delta the
    new text makes (None when it makes none yet); `message()` the whole message."""

    def __init__(self, plan: ChatPlan):
        self.parser = plan.parser()
        self.finished = False

    def feed(self, text: str) -> dict | None:
        return self._delta(self.parser.feed(text))

    def finish(self) -> dict | None:
        if self.finished:
            return None
        self.finished = True
        return self._delta(self.parser.finish())

    def message(self) -> dict:
        self.finish()
        return self.parser.message().openai()

    @property
    def has_calls(self) -> bool:
        return bool(self.parser.calls)

    def finish_reason(self, reason: str) -> str:
        """llama-server: "tool_calls" when the message holds calls and the run was not cut short."""
        return "tool_calls" if self.has_calls and reason == "stop" else reason

    @staticmethod
    def _delta(events) -> dict | None:
        delta: dict = {}
        calls: list[dict] = []
        for ev in events:
            if isinstance(ev, Content):
                delta["content"] = delta.get("content", "") + ev.text
            elif isinstance(ev, Reasoning):
                delta["reasoning_content"] = delta.get("reasoning_content", "") + ev.text
            elif isinstance(ev, ToolCallStart):
                calls.append({"index": ev.index, "id": ev.id, "type": "function",
                              "function": {"name": ev.name, "arguments": ""}})
            elif isinstance(ev, ToolCallArgs):
                if calls and calls[-1]["index"] == ev.index:
                    calls[-1]["function"]["arguments"] += ev.text
                else:
                    calls.append({"index": ev.index, "function": {"arguments": ev.text}})
        if calls:
            delta["tool_calls"] = calls
        return delta or None
