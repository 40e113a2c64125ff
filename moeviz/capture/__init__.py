"""Capture layer: getting MoE routing out of llama.cpp.

Backends: `callback` (llama.cpp's eval callback; works on any build) and `native`
(moeviz's patched libllama, see patches/). Both return `BatchRouting` per decode.
"""
from .factory import CAPTURE_CHOICES, CaptureUnavailable, make_capture, native_available
from .protocol import CaptureBackend
from .routing import BatchRouting, MissingRouting

__all__ = ["BatchRouting", "CAPTURE_CHOICES", "CaptureBackend", "CaptureUnavailable", "MissingRouting",
           "make_capture", "native_available"]
