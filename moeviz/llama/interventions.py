"""moeviz's interventions in the patched libllama: a top-k override and expert masks.

Both are context settings (patches/0010-moe-routing-capture.patch): the next decode
rebuilds its graph with them, no model reload. An unpatched build has neither.
"""
from __future__ import annotations

import ctypes
import functools

from ..errors import Unavailable, UserError
from .lib import llama_cpp

_P_I32 = ctypes.POINTER(ctypes.c_int32)


@functools.cache
def _api():
    lib = llama_cpp()._lib
    try:
        k_fn, mask_fn = lib.llama_moe_set_experts_per_token, lib.llama_moe_set_mask
    except AttributeError:
        return None
    k_fn.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    k_fn.restype = ctypes.c_int32
    mask_fn.argtypes = [ctypes.c_void_p, _P_I32, _P_I32, ctypes.c_int32]
    mask_fn.restype = ctypes.c_int32
    return k_fn, mask_fn


def available() -> bool:
    try:
        return _api() is not None
    except Exception:
        return False


def _need():
    api = _api()
    if api is None:
        raise Unavailable("top-k overrides and expert masks need moeviz's patched llama.cpp (run 'make setup')")
    return api


def set_experts_per_token(ctx, n: int) -> None:
    """n experts per token in every MoE layer; 0 = the model's own top-k."""
    if _need()[0](ctx, int(n)) != 0:
        raise UserError(f"experts per token {n} is out of range for this model")


def set_mask(ctx, pairs: list[tuple[int, int]]) -> None:
    """(model layer index, expert id) pairs the routers never select; [] clears."""
    n = len(pairs)
    layers = (ctypes.c_int32 * max(1, n))(*[p[0] for p in pairs])
    experts = (ctypes.c_int32 * max(1, n))(*[p[1] for p in pairs])
    if _need()[1](ctx, layers, experts, n) != 0:
        raise UserError("an expert mask names a layer or expert this model does not have")
