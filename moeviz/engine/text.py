"""Prompt rendering and incremental detokenization."""
from __future__ import annotations

import codecs

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


class PromptError(ValueError):
    """The prompt cannot be turned into tokens (bad messages, template failure, too long)."""


def validate_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise PromptError("chat messages must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise PromptError(f"chat message {i} must be an object with string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render_chat(template: str, messages: list[dict], bos_token: str, eos_token: str) -> str:
    """Render the model's own chat template (as llama-cpp-python does, in a sandbox)."""

    def raise_exception(msg):
        raise PromptError(f"chat template: {msg}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader())
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=True, bos_token=bos_token,
            eos_token=eos_token, raise_exception=raise_exception)
    except PromptError:
        raise
    except jinja2.TemplateError as e:
        raise PromptError(f"the model's chat template failed: {e}") from None


class Detokenizer:
    """Turns token pieces (bytes) into text without ever splitting a UTF-8 character.

    A character spread over several tokens appears with the token that completes it;
    the tokens before it get "". Concatenating every token's text gives the full text.
    """

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        return self._dec.decode(piece)

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)
