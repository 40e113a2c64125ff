"""Reading stored binary traces in part: the first tokens of a long run, and a run's
header and arrays without loading or re-checking them.

A page shows a long recorded run at once by fetching its head first — a binary trace
of the first HEAD_TOKENS tokens, marked `"partial": {"n_tokens": <the run's>}` in its
header (docs/trace-format.md) — and then the whole trace. Static sites ship the head
next to the run (export.py); the server cuts it from the stored file
(`/api/runs/<id>.moetrace?head=<n>`), reading only the bytes it needs.

Everything here reads traces that were validated when they were written (the run
store, an export): it checks the layout it relies on, not the values again.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Callable

import numpy as np

from .io import MAGIC
from .schema import Trace, TraceFormatError

HEAD_TOKENS = 1024          # what a page draws first: ~15 s of playback, while the whole trace arrives

Reader = Callable[[int, int], bytes]     # (offset, size) -> bytes


def _layout(read: Reader) -> tuple[dict, int]:
    """(header, start of the data section) of a binary trace."""
    head = read(0, 12)
    if len(head) < 12 or head[:8] != MAGIC:
        raise TraceFormatError("not a binary moeviz trace (bad magic)")
    (hlen,) = struct.unpack_from("<I", head, 8)
    raw = read(12, hlen)
    if len(raw) < hlen:
        raise TraceFormatError("binary trace is truncated (header runs past the end of the file)")
    header = json.loads(raw.decode("utf-8"))
    if not isinstance(header.get("arrays"), dict):
        raise TraceFormatError("binary trace has no 'arrays' description")
    return header, 12 + hlen + (-(12 + hlen)) % 8


def _array_spec(spec: dict) -> tuple[np.dtype, tuple[int, ...], int]:
    return np.dtype(spec["dtype"]).newbyteorder("<"), tuple(int(s) for s in spec["shape"]), int(spec["offset"])


def _write(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The binary layout of io.to_binary, for arrays given as they are."""
    desc, offset, blobs = {}, 0, []
    for name, arr in arrays.items():
        raw = np.ascontiguousarray(arr).tobytes()
        desc[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    text = json.dumps({**header, "arrays": desc}, ensure_ascii=False, separators=(",", ":")).encode()
    pad = (-(len(MAGIC) + 4 + len(text))) % 8
    return b"".join([MAGIC, struct.pack("<I", len(text)), text, b"\0" * pad, *blobs])


def _arrays(header: dict, data: int, view) -> dict[str, np.ndarray]:
    """Every array of a binary trace, each from view(dtype, shape, start)."""
    out = {}
    for name, spec in header["arrays"].items():
        dtype, shape, offset = _array_spec(spec)
        out[name] = view(dtype, shape, data + offset) if math.prod(shape) else np.zeros(shape, dtype)
    return out


def head_bytes(header: dict, arrays: dict[str, np.ndarray], n: int = HEAD_TOKENS) -> bytes | None:
    """The first `n` tokens of a binary trace (its header and arrays, as read by
    open_stored), as a binary trace marked partial; None when the trace has no more
    than `n` tokens (it is its own head)."""
    total = len(header["tokens"])
    if total <= n:
        return None
    for name, a in arrays.items():
        if not a.ndim or a.shape[0] != total:
            raise TraceFormatError(f"binary trace array {name!r} is not one row per token")
    head = {k: v for k, v in header.items() if k not in ("arrays", "finish")}   # the run's end is not in its head
    head["tokens"] = header["tokens"][:n]
    head["partial"] = {"n_tokens": total}
    return _write(head, {name: a[:n] for name, a in arrays.items()})


def binary_head(buf: bytes, n: int = HEAD_TOKENS) -> bytes | None:
    """head_bytes of the binary trace `buf`."""
    header, data = _layout(lambda offset, size: buf[offset:offset + size])

    def view(dtype, shape, start):
        if start + math.prod(shape) * dtype.itemsize > len(buf):
            raise TraceFormatError("binary trace is truncated (an array runs past the end of the file)")
        return np.frombuffer(buf, dtype, math.prod(shape), start).reshape(shape)
    return head_bytes(header, _arrays(header, data, view), n)


def open_stored(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """A binary trace file's header and arrays, the arrays read-only memory-mapped
    views: reading a head or counting the expert ids touches only those bytes."""
    path = Path(path)
    with open(path, "rb") as f:
        def read(offset: int, size: int) -> bytes:
            f.seek(offset)
            return f.read(size)
        header, data = _layout(read)
        size = os.fstat(f.fileno()).st_size

    def view(dtype, shape, start):
        if start + math.prod(shape) * dtype.itemsize > size:
            raise TraceFormatError("binary trace is truncated (an array runs past the end of the file)")
        return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)
    return header, _arrays(header, data, view)


def trace_of(header: dict, arrays: dict[str, np.ndarray]) -> Trace:
    """The Trace of a stored file's header and arrays (open_stored), neither copied nor
    checked again (the file was validated when it was written): what the permalink
    page needs for its title and description costs a header parse and one pass over
    the expert ids."""
    return Trace(model=header["model"], prompt=header.get("prompt"), settings=header.get("settings", {}),
                 tokens=header["tokens"], expert_ids=arrays["expert_ids"], weights=arrays["weights"],
                 probs=arrays.get("probs"), finish=header.get("finish"), meta=header.get("meta", {}))
