"""Recording a run: the one routine behind `moeviz record`, `moeviz export --model`, the
server's live runs (and the OpenAI API beside them).

    rec = Recording(engine, prompt, sampling, probs=True, named=library_prompt)
    for event in rec.events(cancel):   # the engine's events, each added to the trace
        ...                            # send it, show progress, ...
    trace = rec.trace()

`record(...)` does the loop for callers that only want the trace. The trace's
`settings` are built here and nowhere else: the sampling settings, `probs`, `capture`,
and for a library prompt its `prompt_name` / `prompt_title` / `prompt_domain` (what the
page, permalinks and static sites call the run).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Iterator

from .engine import SamplingSettings
from .trace.builder import TraceBuilder
from .trace.schema import Trace


@dataclasses.dataclass(frozen=True)
class Named:
    """A library prompt's identity, as a run carries it (moeviz.prompts.LibraryPrompt has the same fields)."""
    name: str
    title: str | None = None
    domain: str | None = None


def trace_settings(sampling: SamplingSettings, *, capture: str, probs: bool, named=None) -> dict:
    """A trace's `settings`. `named`: the library prompt run (anything with name, title
    and domain), or None for a prompt given directly."""
    out = {**dataclasses.asdict(sampling), "probs": probs, "capture": capture, "prompt_name": None}
    if named is not None:
        out.update(prompt_name=named.name, prompt_title=named.title, prompt_domain=named.domain)
    return out


class Recording:
    """One run of `prompt` on `engine`. The prompt is tokenized (and checked) at once,
    so a caller can refuse it before anything is sent or decoded."""

    def __init__(self, engine, prompt, sampling: SamplingSettings, *, probs: bool = False, named=None):
        self.engine = engine
        self.prompt = prompt
        self.sampling = sampling.validate()
        self.probs = probs
        self.tokens = engine.prompt_tokens(prompt)
        self.settings = trace_settings(self.sampling, capture=engine.capture.name, probs=probs, named=named)
        self._builder = TraceBuilder(engine.info, prompt, self.settings)

    def events(self, cancel: threading.Event | None = None) -> Iterator:
        for ev in self.engine.generate(self.tokens, self.sampling, probs=self.probs, cancel=cancel):
            self._builder.add(ev)
            yield ev

    def trace(self) -> Trace:
        return self._builder.trace()


def record(engine, prompt, sampling: SamplingSettings, *, probs: bool = False, named=None,
           cancel: threading.Event | None = None, on_event: Callable | None = None) -> Trace:
    rec = Recording(engine, prompt, sampling, probs=probs, named=named)
    for ev in rec.events(cancel):
        if on_event is not None:
            on_event(ev)
    return rec.trace()
