"""Trace files: JSON (`.json`) and the compact binary form (`.moetrace`).

Binary layout (all little-endian), documented in docs/trace-format.md:
    8 bytes   magic b"MOETRACE"
    4 bytes   uint32 header length H
    H bytes   UTF-8 JSON header: the trace without routing, plus "arrays":
              {name: {"dtype": "int16"|"int32"|"float32", "shape": [...], "offset": o}}
              with offsets counted from the start of the data section; names:
              expert_ids, weights, probs?, candidate_ids?, candidate_probs?
    padding   zero bytes up to a multiple of 8
    data      the arrays, each C-ordered and 8-byte aligned
Readers in any language need no compression library; browsers read it with
DataView/TypedArray, numpy with frombuffer.

Files are always written atomically (temporary file in the same folder, then
rename), so a crash or a full disk never leaves a half-written trace.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from ..files import replaced_whole
from .jsontext import nonfinite_path, parse_json
from .schema import Trace, TraceFormatError, routing_k, validate_header

MAGIC = b"MOETRACE"
_DTYPES = {"int16": np.int16, "int32": np.int32, "float32": np.float32}
# the arrays a binary trace may hold, and the dtypes each may have
BINARY_ARRAYS = {"expert_ids": ("int16", "int32"), "weights": ("float32",), "probs": ("float32",),
                 "candidate_ids": ("int32",), "candidate_probs": ("float32",)}


def to_json_dict(trace: Trace) -> dict:
    d = trace.header()
    routing = {"expert_ids": trace.expert_ids.tolist(), "weights": trace.weights.tolist()}
    if trace.probs is not None:
        routing["probs"] = trace.probs.tolist()
    d["routing"] = routing
    if trace.candidate_ids is not None:
        d["candidates"] = {**d.get("candidates", {}), "ids": trace.candidate_ids.tolist(),
                           "probs": trace.candidate_probs.tolist()}
    return d


def _candidate_texts(c) -> dict[int, str] | None:
    """The header's candidates.texts ({"<id>": text}), keys back to ints."""
    texts = c.get("texts") if isinstance(c, dict) else None
    if texts is None:
        return None
    if not isinstance(texts, dict):
        raise TraceFormatError("candidates.texts must map token ids to their texts")
    out = {}
    for k, v in texts.items():
        try:
            out[int(k)] = v
        except ValueError:
            raise TraceFormatError(f"candidates.texts has a key {str(k)[:20]!r} that is not a token id") from None
    return out


def strict_numbers(value, name: str, integer: bool = False) -> np.ndarray:
    """A JSON nested list of numbers as float64, refusing what numpy would quietly
    coerce: "3" and true (as 3 and 1), null, ragged rows. Integers only where `integer`."""
    try:
        obj = np.array(value, dtype=object)
    except (ValueError, TypeError, RecursionError):
        obj = None
    allowed = {int} if integer else {int, float}
    if obj is None or not set(map(type, obj.ravel().tolist())) <= allowed:
        kind = "integers" if integer else "numbers"
        raise TraceFormatError(f"{name} must be a rectangular nested list of {kind}") from None
    return obj.astype(np.float64) if obj.size else np.zeros(obj.shape)


def _numbers(value, name: str, integer: bool) -> np.ndarray:
    arr = strict_numbers(value, name, integer)
    if integer and arr.size and not np.array_equal(arr, np.round(arr)):
        raise TraceFormatError(f"{name} must hold integers")
    return arr


def _candidates_from_json(d) -> tuple[np.ndarray | None, np.ndarray | None]:
    c = d.get("candidates")
    if c is None:
        return None, None
    if not isinstance(c, dict) or "ids" not in c or "probs" not in c:
        raise TraceFormatError("candidates must be an object with 'ids' and 'probs'")
    ids, probs = _numbers(c["ids"], "candidates.ids", True), _numbers(c["probs"], "candidates.probs", False)
    n = (d.get("settings") or {}).get("candidates") or 0
    if ids.size == 0:
        ids = ids.reshape(0, n)
    if probs.size == 0:
        probs = probs.reshape(0, n)
    return np.clip(ids, -1, 2**31 - 1).astype(np.int32), probs.astype(np.float32)


def from_json_dict(d) -> Trace:
    validate_header(d)
    routing = d.get("routing")
    if not isinstance(routing, dict):
        raise TraceFormatError("trace has no 'routing' object")
    arrays = {}
    for name, dtype in (("expert_ids", np.int32), ("weights", np.float32), ("probs", np.float32)):
        if name not in routing:
            if name == "probs":
                continue
            raise TraceFormatError(f"routing.{name} is missing")
        arr = strict_numbers(routing[name], f"routing.{name}", integer=name == "expert_ids")
        if name == "expert_ids" and arr.size and not np.array_equal(arr, np.round(arr)):
            raise TraceFormatError("routing.expert_ids must hold integers")
        if arr.size == 0:  # an empty list has shape (0,): give it the documented rank
            arr = arr.reshape(0, len(d["model"]["moe_layers"]),
                              d["model"]["n_expert"] if name == "probs" else routing_k(d["model"], d.get("settings")))
        arrays[name] = arr.astype(dtype) if name != "expert_ids" else np.clip(arr, -1, 2**31 - 1).astype(dtype)
    cand_ids, cand_probs = _candidates_from_json(d)
    return Trace(model=d["model"], prompt=d.get("prompt"), settings=d.get("settings", {}), tokens=d["tokens"],
                 expert_ids=arrays["expert_ids"], weights=arrays["weights"], probs=arrays.get("probs"),
                 finish=d.get("finish"), meta=d.get("meta", {}), candidate_ids=cand_ids,
                 candidate_probs=cand_probs, candidate_texts=_candidate_texts(d.get("candidates"))).validate()


def to_binary(trace: Trace) -> bytes:
    ids_dtype = np.int16 if trace.model["n_expert"] <= 32767 else np.int32
    arrays = {"expert_ids": trace.expert_ids.astype(ids_dtype), "weights": trace.weights.astype(np.float32)}
    if trace.probs is not None:
        arrays["probs"] = trace.probs.astype(np.float32)
    if trace.candidate_ids is not None:
        arrays["candidate_ids"] = trace.candidate_ids.astype(np.int32)
        arrays["candidate_probs"] = trace.candidate_probs.astype(np.float32)
    desc, offset, blobs = {}, 0, []
    for name, arr in arrays.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        desc[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = json.dumps({**trace.header(), "arrays": desc}, ensure_ascii=False, separators=(",", ":")).encode()
    pad = (-(len(MAGIC) + 4 + len(header))) % 8
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, b"\0" * pad, *blobs])


def from_binary(buf: bytes) -> Trace:
    if buf[:8] != MAGIC:
        raise TraceFormatError("not a binary moeviz trace (bad magic)")
    if len(buf) < 12:
        raise TraceFormatError("binary trace is truncated (no header length)")
    (hlen,) = struct.unpack_from("<I", buf, 8)
    if 12 + hlen > len(buf):
        raise TraceFormatError("binary trace is truncated (header runs past the end of the file)")
    header = parse_json(buf[12:12 + hlen], "binary trace header", TraceFormatError)
    validate_header(header)
    if not isinstance(header.get("arrays") or {}, dict):
        raise TraceFormatError("binary trace 'arrays' must be an object")
    data_start = 12 + hlen + (-(12 + hlen)) % 8
    arrays = {}
    for name, spec in (header.get("arrays") or {}).items():
        if name not in BINARY_ARRAYS:
            continue
        try:
            dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
            shape = tuple(spec["shape"])
            offset = spec["offset"]
            # whole, non-negative numbers, and the rank the schema says (checked in
            # Python integers: a claimed [2^32, 2^32] must not wrap to a small count)
            if not all(type(s) is int and s >= 0 for s in (*shape, offset)) or \
                    len(shape) != (2 if name.startswith("candidate") else 3):
                raise ValueError
            start = data_start + offset
        except (KeyError, TypeError, ValueError):
            raise TraceFormatError(f"binary trace array {name!r} has a bad description") from None
        if spec["dtype"] not in BINARY_ARRAYS[name]:
            raise TraceFormatError(f"binary trace array {name!r} has dtype {spec['dtype']}, expected "
                                   f"{' or '.join(BINARY_ARRAYS[name])}")
        count = math.prod(shape)
        if start < data_start or start + count * dtype.itemsize > len(buf):
            raise TraceFormatError(f"binary trace is truncated (array {name!r} runs past the end of the file)")
        arrays[name] = np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)
    for name in ("expert_ids", "weights"):
        if name not in arrays:
            raise TraceFormatError(f"binary trace has no {name} array")
    return Trace(model=header["model"], prompt=header.get("prompt"), settings=header.get("settings", {}),
                 tokens=header["tokens"], expert_ids=arrays["expert_ids"].astype(np.int32),
                 weights=arrays["weights"].astype(np.float32),
                 probs=arrays["probs"].astype(np.float32) if "probs" in arrays else None,
                 finish=header.get("finish"), meta=header.get("meta", {}),
                 candidate_ids=arrays["candidate_ids"].astype(np.int32) if "candidate_ids" in arrays else None,
                 candidate_probs=arrays["candidate_probs"].astype(np.float32) if "candidate_probs" in arrays else None,
                 candidate_texts=_candidate_texts(header.get("candidates"))).validate()


def is_binary_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(".moetrace")


def dumps(trace: Trace, binary: bool = False) -> bytes:
    if binary:
        return to_binary(trace)
    return json.dumps(to_json_dict(trace), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(buf: bytes) -> Trace:
    """Parse a trace from bytes, either form (detected by the magic)."""
    if buf[:8] == MAGIC:
        return from_binary(buf)
    # one reader for every JSON from outside (jsontext.py): NaN, 1e999, 5000-digit
    # integers and lone surrogates are refused here, never stored
    try:
        d = parse_json(buf, "trace JSON", TraceFormatError, finite=False)
    except TraceFormatError as e:
        if str(e) == "trace JSON is not valid JSON":
            raise TraceFormatError("trace is neither binary nor valid JSON") from None
        raise
    # NaN and infinities: refused where they are (the routing arrays by the schema's check)
    where = nonfinite_path(d, skip=("routing", "candidates"))
    if where:
        raise TraceFormatError(f"{where} is not a finite number")
    return from_json_dict(d)


def save(trace: Trace, path: str | os.PathLike) -> Path:
    """Validate, then write atomically; `.moetrace` gets the binary form, anything else JSON."""
    trace.validate()
    path = Path(path)
    atomic_write(path, dumps(trace, binary=is_binary_path(path)))
    return path


def load(path: str | os.PathLike) -> Trace:
    p = Path(path)
    try:
        buf = p.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"trace file not found: {p}") from None
    except IsADirectoryError:
        raise TraceFormatError(f"trace path is a directory: {p}") from None
    try:
        return loads(buf)
    except TraceFormatError as e:
        e.file = p   # the same error, now naming its file
        raise


def atomic_write(path: Path, data: bytes) -> None:
    with replaced_whole(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
