"""What every routing capture backend provides (native and callback implement it).

The engine drives one backend per context:
    configure_context(cparams)  before the llama_context exists (e.g. set cb_eval)
    attach(ctx)                 once the context exists
    begin(probs)                before each llama_decode: start collecting
    finish(n_tokens)            after a successful decode: the batch's BatchRouting,
                                every (token, MoE layer) present, or MissingRouting
    abort()                     after a failed decode: drop what was collected
    set_experts_per_token(k)    the top-k the graph now uses (an intervention)
`needs_all_outputs`: llama.cpp runs the last layer only on output rows, so a backend
that cannot change that (the callback) needs every prompt row to be an output.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from .routing import BatchRouting


@runtime_checkable
class CaptureBackend(Protocol):
    name: str
    needs_all_outputs: bool

    def configure_context(self, cparams) -> None: ...

    def attach(self, ctx) -> None: ...

    def begin(self, probs: bool = False) -> None: ...

    def finish(self, n_tokens: int) -> BatchRouting: ...

    def abort(self) -> None: ...

    def set_experts_per_token(self, k: int) -> None: ...
