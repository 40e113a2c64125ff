"""Routing capture through moeviz's patched libllama (patches/0010-moe-routing-capture.patch).

The patch makes the routing tensors graph outputs that llama.cpp copies to the host
after compute, like logits: no graph splits, no synchronization per tensor, no
Python in the graph's path. Rows follow the batch's token order across ubatches.

The last layer must route every token, but llama.cpp runs it only on the rows whose
output was requested. With capture on, every graph is built as if all rows were
outputs (upstream's own all-outputs path, so each graph's shapes stay consistent),
and the real selection is applied just before the output head, which the patch finds
by walking back from the logits through row-wise ops (no weight pointers matched; if
the walk finds no head it knows, it selects from the logits, still exact). So no
extra outputs are requested and the logits are those of an uncaptured run.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from ..llama.lib import llama_cpp
from .routing import BatchRouting, MissingRouting

_P_I32 = ctypes.POINTER(ctypes.c_int32)
_P_F32 = ctypes.POINTER(ctypes.c_float)


@functools.cache
def _api():
    """The patched functions, or None on an unpatched build."""
    lib = llama_cpp()._lib
    try:
        set_fn, layers_fn, copy_fn = lib.llama_moe_capture_set, lib.llama_moe_capture_layers, lib.llama_moe_capture_copy
    except AttributeError:
        return None
    set_fn.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_bool]
    set_fn.restype = None
    layers_fn.argtypes = [ctypes.c_void_p, _P_I32, ctypes.c_int32]
    layers_fn.restype = ctypes.c_int32
    copy_fn.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    copy_fn.restype = ctypes.c_int32
    return set_fn, layers_fn, copy_fn


def available() -> bool:
    try:
        return _api() is not None
    except Exception:
        return False


_COPY_ERRORS = {-1: "routing capture was off during the decode",
                -3: "captured routing does not match the decoded batch (token count, top-k, expert count or type)"}


class NativeCapture:
    name = "native"
    # The patched graph keeps every row through the last layer by itself.
    needs_all_outputs = False

    def __init__(self, moe_layers: list[int], n_expert_used: int, n_expert: int):
        self.moe_layers = list(moe_layers)
        self.k = n_expert_used
        self.n_expert = n_expert
        self.ctx = None
        self._probs = False
        self._layers_buf = (ctypes.c_int32 * (len(moe_layers) + 64))()

    def configure_context(self, cparams) -> None:
        pass

    def set_experts_per_token(self, k: int) -> None:
        self.k = k

    def attach(self, ctx) -> None:
        self.ctx = ctx
        _api()[0](ctx, True, False)

    def begin(self, probs: bool = False) -> None:
        if probs != self._probs:
            _api()[0](self.ctx, True, probs)   # next decode rebuilds the graph with(out) probs
            self._probs = probs

    def finish(self, n_tokens: int) -> BatchRouting:
        _, layers_fn, copy_fn = _api()
        n_layers = layers_fn(self.ctx, self._layers_buf, len(self._layers_buf))
        got = list(self._layers_buf[:min(n_layers, len(self._layers_buf))])
        if got != self.moe_layers:
            raise MissingRouting(f"captured routing for layers {got}, expected MoE layers {self.moe_layers}")
        L = len(self.moe_layers)
        ids = np.empty((L, n_tokens, self.k), np.int32)
        w = np.empty((L, n_tokens, self.k), np.float32)
        p = np.empty((L, n_tokens, self.n_expert), np.float32) if self._probs else None
        rc = copy_fn(self.ctx, n_tokens, self.k, self.n_expert, ids.ctypes.data, w.ctypes.data,
                     p.ctypes.data if p is not None else None)
        if rc == -2:
            raise MissingRouting(f"a MoE layer is missing rows for some of the {n_tokens} tokens")
        if rc < 0:
            raise MissingRouting(_COPY_ERRORS.get(rc, f"routing copy failed ({rc})"))
        # layer-major from C; the trace is token-major
        return BatchRouting(_token_major(ids), _token_major(w), None if p is None else _token_major(p))

    def abort(self) -> None:
        pass


def _token_major(a: np.ndarray) -> np.ndarray:
    """[layer, token, x] -> contiguous [token, layer, x]; for one token (every decode
    step) the transpose is already contiguous and nothing is copied."""
    return np.ascontiguousarray(a.transpose(1, 0, 2))
