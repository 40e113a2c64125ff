"""ggml's RPC backend as loaded in this process: the library copies libllama uses, and the
functions ggml-rpc offers through its registry (`proc`), moeviz's patched ones included."""
from __future__ import annotations

import ctypes

from .lib import LlamaCppUnavailable, linked_library_path


def lib(name: str) -> ctypes.CDLL:
    """The copy libllama itself uses: the wheel holds lib<name>.so, .so.0 and .so.0.x as
    separate files, and libllama links the .so.0 (its soname); loading another name would
    load a second copy, with its own backend registry and abort callback."""
    path = linked_library_path(name)
    if path is None:
        raise LlamaCppUnavailable(f"this llama-cpp-python build has no RPC backend (lib{name}.so.0 missing); "
                                  "run 'make setup' to rebuild it with -DGGML_RPC=ON")
    return ctypes.CDLL(str(path))


def ggml() -> ctypes.CDLL:
    g = lib("ggml")
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for fn, args, res in [
        ("ggml_backend_reg_by_name", [ctypes.c_char_p], vp),
        ("ggml_backend_reg_get_proc_address", [vp, ctypes.c_char_p], vp),
        ("ggml_backend_register", [vp], None),
        ("ggml_backend_reg_dev_count", [vp], sz),
        ("ggml_backend_reg_dev_get", [vp, sz], vp),
        ("ggml_backend_dev_count", [], sz),
        ("ggml_backend_dev_get", [sz], vp),
        ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_type", [vp], ctypes.c_int),
        ("ggml_backend_dev_backend_reg", [vp], vp),
        ("ggml_backend_reg_name", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
    ]:
        f = getattr(g, fn)
        f.argtypes, f.restype = args, res
    return g


def rpc_supported() -> bool:
    try:
        return bool(ggml().ggml_backend_reg_by_name(b"RPC"))
    except (LlamaCppUnavailable, OSError, AttributeError):
        return False


_procs: dict[tuple[str, object], object] = {}


def proc(name: str, prototype):
    """ggml-rpc's function `name` as a `prototype` (a ctypes CFUNCTYPE), or None where this
    build has none (stock ggml-rpc lacks moeviz's ggml_backend_rpc_server_lost and
    ggml_backend_rpc_set_timeouts). Looked up once."""
    key = (name, prototype)
    if key not in _procs:
        fn = None
        try:
            g = ggml()
            reg = g.ggml_backend_reg_by_name(b"RPC")
            addr = g.ggml_backend_reg_get_proc_address(reg, name.encode()) if reg else None
            fn = prototype(addr) if addr else None
        except (LlamaCppUnavailable, OSError, AttributeError):
            fn = None
        _procs[key] = fn
    return _procs[key]
