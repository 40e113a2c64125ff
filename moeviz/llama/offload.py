"""CPU-MoE offload: keep expert tensors in host memory, like llama.cpp's --cpu-moe.

llama.cpp's model params take a NULL-terminated list of (regex, buffer type) tensor
overrides; llama-cpp-python leaves that field as an opaque pointer, so the list is
built here. The patterns are the ones llama.cpp's own `--cpu-moe` / `--n-cpu-moe N`
use (common/common.h LLM_FFN_EXPS_REGEX): routed-expert weights only; attention,
norms, shared experts and the router stay wherever --n-gpu-layers puts them.
"""
from __future__ import annotations

import ctypes

from .lib import ggml_base

EXPERT_TENSORS = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


class _Override(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def expert_patterns(cpu_moe: bool, n_cpu_moe: int) -> list[str]:
    if n_cpu_moe < 0:
        raise ValueError(f"--n-cpu-moe must be zero or more, got {n_cpu_moe}")
    if cpu_moe:
        return [EXPERT_TENSORS]
    return [rf"blk\.{il}{EXPERT_TENSORS}" for il in range(n_cpu_moe)]


class TensorOverrides:
    """Owns the C array handed to llama_model_params.tensor_buft_overrides.

    It must stay alive until the model is loaded (the loader reads it then).
    """

    def __init__(self, patterns: list[str]):
        self.patterns = patterns
        lib = ggml_base()
        lib.ggml_backend_cpu_buffer_type.restype = ctypes.c_void_p
        cpu = lib.ggml_backend_cpu_buffer_type()
        self._strings = [p.encode() for p in patterns]
        self._array = (_Override * (len(patterns) + 1))()
        for i, s in enumerate(self._strings):
            self._array[i].pattern = s
            self._array[i].buft = cpu
        self._array[len(patterns)].pattern = None   # terminator
        self._array[len(patterns)].buft = None

    def apply(self, model_params) -> None:
        if self.patterns:
            model_params.tensor_buft_overrides = ctypes.cast(self._array, ctypes.c_void_p)
