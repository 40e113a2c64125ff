"""A GGUF file's metadata and tensor table, read fast (what gguf_info needs).

gguf's GGUFReader builds a numpy view for every part of every field: a 152k-token
vocabulary (Qwen3, tokens + merges + types) is ~460k memmap slices, 8-36 s on this
machine before llama.cpp even starts loading. This reads the same header with struct
over one mmap, keeps string arrays as (offset, count) and decodes a field only when
asked (`contents()`), so the same file takes well under a second.

The interface is the subset of GGUFReader's that gguf_info uses: `fields[key]` with
`contents()`, `data` (one entry per array item) and `types`, and `tensors` with name,
tensor_type, n_elements, n_bytes, data_offset. Run gguf_info.check_gguf_layout first:
this trusts the counts and lengths it walks.
"""
from __future__ import annotations

import dataclasses
import mmap
import os
import struct

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import UserError

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
          12: "<f8"}
DEFAULT_ALIGNMENT = 32


class HeaderError(UserError, ValueError):
    """The header holds something no GGUF reader accepts: a bad model file, the user's to
    fix (gguf_info.read_model_info answers any failure to read a header as a damaged file)."""


@dataclasses.dataclass
class Field:
    buf: object
    vtype: int
    offset: int          # where the value starts (after the key and type)
    count: int = 1       # array items
    item_type: int = -1  # array item type
    value: object = None  # a scalar's value, read at once

    @property
    def types(self) -> list:
        return [GGUFValueType(self.vtype)] if self.vtype != 9 else [GGUFValueType(9), GGUFValueType(self.item_type)]

    @property
    def data(self) -> range:
        return range(self.count) if self.vtype == 9 else range(1)

    def contents(self):
        if self.vtype != 9:
            return self.value
        if self.item_type == 8:
            out, pos = [], self.offset
            for _ in range(self.count):
                (n,) = struct.unpack_from("<Q", self.buf, pos)
                out.append(str(self.buf[pos + 8:pos + 8 + n], "utf-8"))
                pos += 8 + n
            return out
        return np.frombuffer(self.buf, dtype=_NUMPY[self.item_type], count=self.count, offset=self.offset).tolist()


@dataclasses.dataclass(frozen=True)
class Tensor:
    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple
    n_elements: int
    n_bytes: int
    data_offset: int


class Header:
    def __init__(self, path: str | os.PathLike):
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        buf = self._buf
        pos = 8   # magic, version
        n_tensors, n_kv = struct.unpack_from("<QQ", buf, pos)
        pos += 16
        self.fields: dict[str, Field] = {}
        for _ in range(n_kv):
            key, pos = _string(buf, pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            field, pos = _value(buf, vtype, pos)
            self.fields[key] = field
        infos = []
        for _ in range(n_tensors):
            name, pos = _string(buf, pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            pos += 4 + 8 * n_dims
            raw_type, offset = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            infos.append((name, dims, raw_type, offset))
        align = self.fields.get("general.alignment")
        alignment = align.value if align is not None and align.vtype == 4 else DEFAULT_ALIGNMENT
        if alignment == 0 or alignment & (alignment - 1):
            raise HeaderError("general.alignment must be a non-zero power of two")
        start = pos + (-pos % alignment)
        self.tensors: list[Tensor] = []
        seen = set()
        for name, dims, raw_type, offset in infos:
            if name in seen:
                raise HeaderError(f"tensor {name} appears twice")
            seen.add(name)
            try:
                ttype = GGMLQuantizationType(raw_type)
            except ValueError:
                raise HeaderError(f"tensor {name} has unknown type {raw_type}") from None
            n = 1
            for d in dims:
                n *= d
            block, type_size = GGML_QUANT_SIZES[ttype]
            self.tensors.append(Tensor(name, ttype, dims, n, n * type_size // block, start + offset))

    def close(self) -> None:
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()


def _string(buf, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    return str(buf[pos + 8:pos + 8 + n], "utf-8"), pos + 8 + n


def _value(buf, vtype: int, pos: int) -> tuple[Field, int]:
    if vtype in _SCALARS:
        fmt = "<" + _SCALARS[vtype]
        (v,) = struct.unpack_from(fmt, buf, pos)
        return Field(buf, vtype, pos, value=v), pos + struct.calcsize(fmt)
    if vtype == 8:
        s, end = _string(buf, pos)
        return Field(buf, vtype, pos, value=s), end
    if vtype == 9:
        item_type, count = struct.unpack_from("<IQ", buf, pos)
        start = pos + 12
        if item_type in _SCALARS:
            end = start + count * struct.calcsize("<" + _SCALARS[item_type])
        elif item_type == 8:
            end = start
            unpack = struct.Struct("<Q").unpack_from
            for _ in range(count):
                end += 8 + unpack(buf, end)[0]
        else:
            raise HeaderError(f"arrays of type {item_type} are not read")
        return Field(buf, vtype, start, count, item_type), end
    raise HeaderError(f"unknown value type {vtype}")
