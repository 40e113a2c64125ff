"""The one factory for capture backends (see protocol.CaptureBackend)."""
from __future__ import annotations

from ..errors import UserError
from .callback import CallbackCapture
from .protocol import CaptureBackend
from ..gguf_info import ModelInfo

CAPTURE_CHOICES = ("auto", "native", "callback")


class CaptureUnavailable(UserError, RuntimeError):
    pass


def native_available() -> bool:
    try:
        from . import native  # noqa: PLC0415
    except ImportError:
        return False
    return native.available()


def make_capture(kind: str, info: ModelInfo) -> CaptureBackend:
    if kind not in CAPTURE_CHOICES:
        raise CaptureUnavailable(f"unknown capture backend {kind!r}; choose one of {', '.join(CAPTURE_CHOICES)}")
    if kind == "native" or (kind == "auto" and native_available()):
        if not native_available():
            raise CaptureUnavailable("native capture needs moeviz's patched llama.cpp (run 'make setup'); use --capture callback")
        from .native import NativeCapture  # noqa: PLC0415

        return NativeCapture(info.moe_layers, info.n_expert_used, info.n_expert)
    # GroveMoE's second build_moe_ffn per layer (its chunk experts) reuses the layer's router
    return CallbackCapture(info.moe_layers, info.n_expert_used, info.n_expert,
                           routers_per_layer=2 if info.architecture == "grovemoe" else 1)
