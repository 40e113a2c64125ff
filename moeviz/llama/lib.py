"""ctypes access to llama.cpp: llama-cpp-python's bindings, plus what they do not bind.

llama-cpp-python exposes `llama.h`; moeviz also needs a few ggml pieces (the tensor
struct, to read routing tensors inside the eval callback) and, when the patched
build is installed, the moeviz routing API. Everything ctypes-level lives here so the
rest of moeviz never touches raw pointers.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from ..errors import Unavailable

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_OP_PARAMS = 64
GGML_MAX_NAME = 64

GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_I32, GGML_TYPE_BF16 = 0, 1, 26, 30
_NUMPY_DTYPES = {GGML_TYPE_F32: np.float32, GGML_TYPE_F16: np.float16, GGML_TYPE_I32: np.int32}


class GgmlTensor(ctypes.Structure):
    """Mirror of `struct ggml_tensor` in the vendored ggml.h (checked at load time)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


NAME_OFFSET = GgmlTensor.name.offset


class LlamaCppUnavailable(Unavailable, RuntimeError):
    """llama-cpp-python is missing or was built without what moeviz needs."""


@functools.cache
def llama_cpp():
    """Import llama_cpp's ctypes module quietly (it prints nothing, but be sure)."""
    try:
        import llama_cpp.llama_cpp as lc  # noqa: PLC0415
    except Exception as e:  # ImportError, OSError from a broken shared library
        raise LlamaCppUnavailable(
            f"llama-cpp-python could not be loaded ({e}); run 'make setup' to build it"
        ) from e
    return lc


@functools.cache
def lib_dir() -> Path:
    """Where libllama was loaded from (llama-cpp-python honours LLAMA_CPP_LIB_PATH)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    import llama_cpp as pkg  # noqa: PLC0415

    return Path(pkg.__file__).parent / "lib"


@functools.cache
def linked_library_path(name: str) -> Path | None:
    """The file of ggml library `name` ("ggml-base", "ggml", "ggml-rpc") that libllama
    itself uses. The wheel holds lib<name>.so, .so.0 and .so.0.x as separate files (wheels
    keep no symlinks) and libllama links the .so.0, its soname: loading another file
    name loads a second copy, with its own globals (the abort callback, the backend
    registry, the CPU buffer type's address that --cpu-moe hands to the loader)."""
    llama_cpp()  # loads libllama, which already pulled in its ggml libraries
    for file in (f"lib{name}.so.0", f"lib{name}.so", f"lib{name}.0.dylib", f"lib{name}.dylib", f"{name}.dll"):
        path = lib_dir() / file
        if path.is_file():
            return path
    return None


@functools.cache
def ggml_base() -> ctypes.CDLL:
    """libggml-base (libllama's copy), for ggml_backend_tensor_get, the CPU buffer type
    and the struct layout self-check."""
    path = linked_library_path("ggml-base")
    if path is None:
        raise LlamaCppUnavailable(f"libggml-base not found next to libllama in {lib_dir()}")
    lib = ctypes.CDLL(str(path))
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
    _check_tensor_layout(lib)
    return lib


class _GgmlInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def _check_tensor_layout(lib: ctypes.CDLL) -> None:
    """Make a real ggml tensor and check our struct mirror reads it correctly.

    A ggml upgrade that moved fields would otherwise make the callback read garbage.
    """
    lib.ggml_init.argtypes = [_GgmlInitParams]
    lib.ggml_init.restype = ctypes.c_void_p
    lib.ggml_new_tensor_2d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    lib.ggml_new_tensor_2d.restype = ctypes.c_void_p
    lib.ggml_set_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_set_name.restype = ctypes.c_void_p
    lib.ggml_free.argtypes = [ctypes.c_void_p]
    lib.ggml_free.restype = None
    ctx = lib.ggml_init(_GgmlInitParams(1 << 16, None, False))
    try:
        t = lib.ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 3, 5)
        lib.ggml_set_name(t, b"moeviz-layout-check")
        s = GgmlTensor.from_address(t)
        ok = (s.type == GGML_TYPE_I32 and list(s.ne) == [3, 5, 1, 1] and list(s.nb)[:2] == [4, 12]
              and s.name == b"moeviz-layout-check" and s.data)
    finally:
        lib.ggml_free(ctx)
    if not ok:
        raise LlamaCppUnavailable("ggml_tensor layout differs from moeviz's mirror; the llama.cpp build is not the pinned one")


def read_tensor(t: int) -> np.ndarray:
    """Copy a ggml tensor (any backend) to a numpy array of numpy shape ne[::-1].

    Reads by the tensor's strides: routing tensors are often views (top-k is a
    view of an argsort with row stride n_expert), so the bytes are not contiguous.
    """
    s = GgmlTensor.from_address(t)
    dtype = _NUMPY_DTYPES.get(s.type)
    if dtype is None:
        raise ValueError(f"routing tensor {s.name.decode()} has unsupported ggml type {s.type}")
    item = np.dtype(dtype).itemsize
    ne = list(s.ne)
    nb = list(s.nb)
    span = sum((n - 1) * b for n, b in zip(ne, nb)) + item
    raw = np.empty(span, dtype=np.uint8)
    if s.buffer and ggml_base().ggml_backend_buffer_is_host(s.buffer):
        ctypes.memmove(raw.ctypes.data, s.data, span)
    else:
        ggml_base().ggml_backend_tensor_get(t, raw.ctypes.data, 0, span)
    # numpy checks that the strided view stays inside `raw`; copy() makes it C-ordered
    return np.ndarray(ne[::-1], dtype, raw, 0, nb[::-1]).copy()
