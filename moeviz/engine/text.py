"""Prompt rendering and incremental detokenization."""
from __future__ import annotations

import codecs

import jinja2

from ..errors import UserError
from .chat_template import TemplateRaised, compile_template, template_variables


class PromptError(UserError, ValueError):
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


def render_chat(template: str, messages: list[dict], bos_token: str, eos_token: str, **options) -> str:
    """Render the model's own chat template as transformers and llama.cpp do (in a sandbox).

    ``options`` are the template inputs beyond the messages (tools, enable_thinking,
    reasoning_effort, add_generation_prompt; see chat_template.template_variables).
    Any failure is one line: it goes back to the API client as the reason.
    """
    variables = template_variables(messages, bos_token=bos_token, eos_token=eos_token, **options)
    try:
        return compile_template(template).render(**variables)
    except TemplateRaised as e:
        raise PromptError(f"the model's chat template refuses these messages: {_one_line(str(e))}") from None
    except jinja2.TemplateSyntaxError as e:
        reason = _one_line(e.message or "")
        raise PromptError(f"the model's chat template does not parse (line {e.lineno}): {reason}") from None
    except Exception as e:  # noqa: BLE001 - a template is code from the GGUF: anything it raises is its own failure
        where = _template_line(e.__traceback__)
        raise PromptError(f"the model's chat template failed{where}: {type(e).__name__}: {_one_line(str(e))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no reason given)"


def _template_line(tb) -> str:
    # jinja maps its frames onto the template's own lines (file "<template>"); the
    # innermost one says where, without a traceback or any path of this server.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" at line {line}" if line else ""


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


class _StopAutomaton:
    """Knuth-Morris-Pratt over one stop string, fed a character at a time: `state` is the
    length of the longest prefix of the stop string that ends the text so far. The failure
    table is built only as far as `state` has reached (a 20,000-character stop string that
    never matches costs a few entries, not 20,000)."""

    def __init__(self, s: str):
        self.s = s
        self.fail = [0]      # fail[i]: longest proper border of s[:i + 1], built on demand
        self.state = 0

    def _border(self, i: int) -> int:
        while len(self.fail) <= i:
            j, k = len(self.fail), self.fail[-1]
            while k and self.s[j] != self.s[k]:
                k = self.fail[k - 1]
            self.fail.append(k + 1 if self.s[j] == self.s[k] else 0)
        return self.fail[i]

    def feed(self, ch: str) -> bool:
        """Advance by one character; True when the stop string now ends the text."""
        k, s = self.state, self.s
        while k and s[k] != ch:
            k = self._border(k - 1)
        if s[k] == ch:
            k += 1
        if k == len(s):
            self.state = self._border(k - 1)
            return True
        self.state = k
        return False


class StopStrings:
    """A run's stop strings over its generated text, fed one token's text at a time: the
    loop's stop decision, with the same automata as StopText (each token costs its own
    length per stop string; no copy of the text so far is kept)."""

    def __init__(self, stop: list[str]):
        self._automata = [_StopAutomaton(s) for s in stop if s]

    def hit(self, text: str) -> bool:
        """Whether the text so far, with `text` appended, now contains a stop string."""
        hit = False
        for a in self._automata:      # every automaton sees every character (no early exit)
            for ch in text:
                hit = a.feed(ch) or hit
        return hit


class StopText:
    """The text a client sees of a run with stop strings: the answer ends before the first
    stop string to complete (generation stops after the token that completes it, as
    llama-cpp-python trims it), and while streaming a tail that could still become a stop
    string is held back.

    Incremental: each piece costs its own length times the number of stop strings, never
    the text so far nor the stop strings' length (a search of the whole text and every
    prefix of every stop string per token made four 20,000-character stop strings hold the
    event loop for half a second in a 1,024-token stream)."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self._automata = [_StopAutomaton(s) for s in self.stop]
        self.text = ""
        self.sent = 0            # characters of `text` already handed out
        self.cut: int | None = None   # where the answer ends (the first completed stop string's start)

    def push(self, piece: str) -> str:
        start = len(self.text)
        self.text += piece
        if self.cut is None and self._automata:
            # of the stop strings completing in this piece (its token ends the run), the
            # one that starts first: the text ends before it
            for i, ch in enumerate(piece):
                for a in self._automata:
                    if a.feed(ch):
                        at = start + i + 1 - len(a.s)
                        self.cut = at if self.cut is None else min(self.cut, at)
        end = self.cut if self.cut is not None else len(self.text) - self._held()
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    def _held(self) -> int:
        """Characters at the end that could begin a stop string (held back while streaming)."""
        return max((a.state for a in self._automata), default=0)

    def finish(self) -> str:
        end = len(self.text) if self.cut is None else self.cut
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    @property
    def final(self) -> str:
        return self.text if self.cut is None else self.text[:self.cut]
