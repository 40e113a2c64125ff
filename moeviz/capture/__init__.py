"""Capture layer: getting MoE routing out of llama.cpp.

Backends: `callback` (llama.cpp's eval callback; works on any build) and `native`
(moeviz's patched libllama, see patches/). Both return `BatchRouting` per decode.
"""
from .lib import LlamaCppUnavailable
from .routing import BatchRouting, MissingRouting

__all__ = ["BatchRouting", "LlamaCppUnavailable", "MissingRouting"]
