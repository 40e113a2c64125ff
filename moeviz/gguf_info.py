"""Read a model's MoE shape from its GGUF file (metadata and tensor list only).

No llama.cpp needed: `moeviz info` works before the library is built, and the
engine uses the same description to know which layers to expect routing from.

How each architecture routes (what llama.cpp's graph hard-codes and what it reads from
metadata) is the table in gguf_archs.py; this module applies it to one file's
metadata and tensor list.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable

from .errors import UserError
from .gguf_archs import ARCHS, GATING_NAMES, NO_DEFAULT, REQUIRED, FromKey, Layers
_EXPERT_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down|gate_up)_exps\.")
_ROUTER_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_gate_inp\.weight$")
_SHARED_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down)_shexp\.")
_BIAS_TENSOR = re.compile(r"^blk\.(\d+)\.exp_probs_b(\.bias)?$")   # hy_v3/hy_v4 name it without ".bias"


class ModelFileError(UserError, ValueError):
    """The file is missing, not a GGUF, or damaged."""


@dataclasses.dataclass
class ModelInfo:
    path: str
    name: str
    architecture: str
    file_size: int
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_expert: int
    n_expert_used: int
    moe_layers: list[int]
    dense_layers: list[int]          # main-graph layers without experts (MTP / next-n layers are in neither)
    n_shared_experts: int
    gating: str | None               # None: llama.cpp refuses or aborts on this file (see load_error)
    weights_normalized: bool | None
    weights_scale: float
    n_expert_groups: int
    n_group_used: int
    total_params: int
    active_params: int
    expert_params: int
    tensor_types: dict[str, int]
    expert_bytes: int = 0            # routed-expert weights, what --cpu-moe keeps in host memory
    file_bytes_other: int = 0        # every other tensor
    chat_template: str | None = dataclasses.field(default=None, repr=False)
    selection_bias: bool = False     # an exp_probs_b bias picks the experts (weights stay unbiased)
    causal: bool = True              # False: diffusion, embedding-only or draft model (see decoding)
    decoding: str = "causal"         # "causal" | "diffusion" | "embedding" | "draft"
    nextn_layers: list[int] = dataclasses.field(default_factory=list)  # MTP layers the main graph never runs
    moe_calls_per_layer: int = 1     # grovemoe: 2 (routed, then chunk experts); the first is recorded
    n_expert_used_per_layer: list[int] | None = None  # per MoE layer, only when it varies (nemotron_h)
    known_architecture: bool = False  # described by ARCHS (else guessed from metadata and tensors)
    load_error: str | None = None    # llama.cpp will refuse or abort on this file's MoE metadata
    routing_notes: list[str] = dataclasses.field(default_factory=list)
    # MoE layers whose experts come from the token id, not the router's top-k (DeepSeek-V4's
    # hash layers): a top-k override or an expert mask cannot apply there
    token_routed_layers: list[int] = dataclasses.field(default_factory=list)
    kept_experts: list[list[int]] | None = None  # moeviz prune: the original ids each MoE layer kept, in order

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers) and self.n_expert > 0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("chat_template")
        d["has_chat_template"] = self.chat_template is not None
        d["is_moe"] = self.is_moe
        return d


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:
        return default


def _array_len(reader, key: str) -> int:
    f = reader.fields.get(key)
    return len(f.data) if f is not None and len(f.types) > 1 else 0


class _Meta:
    """What the table's rules read: `<arch>.*` keys, the main-graph layer count, tensors."""

    def __init__(self, reader, arch: str, tensor_names: set[str]):
        self.reader, self.arch = reader, arch
        self.n_layer = int(self.get("block_count", 0) or 0)
        # deepseek2.cpp:5: the vocab_size key, else the tokenizer list's length
        self.n_vocab = int(self.get("vocab_size") or 0) if self.has("vocab_size") else _array_len(reader, "tokenizer.ggml.tokens")
        nextn = int(self.get("nextn_predict_layers", 0) or 0)
        if arch == "deepseek4" and nextn and f"blk.{self.n_layer - nextn}.nextn.eh_proj.weight" not in tensor_names:
            nextn = 0  # deepseek4.cpp:20-26: a trunk-only file runs all block_count layers
        self.n_main = max(0, self.n_layer - nextn)

    def get(self, key: str, default=None):
        return _field(self.reader, f"{self.arch}.{key}", default)

    def has(self, key: str) -> bool:
        return f"{self.arch}.{key}" in self.reader.fields

    def per_layer(self, key: str, default=0) -> list[int]:
        """A key llama.cpp reads with get_key_or_arr: one value for all layers, or an array."""
        v = self.get(key, default)
        vals = list(v) if isinstance(v, (list, tuple)) else [v] * self.n_layer
        return [int(x or 0) for x in vals] + [0] * max(0, self.n_layer - len(vals))


def _setting(arch: str, s, m: _Meta):
    """(value, error) of a literal or FromKey setting for this file."""
    if not isinstance(s, FromKey):
        return s, None
    if not m.has(s.key):
        if s.default is REQUIRED:
            return None, f"llama.cpp refuses this file: {arch}.{s.key} is missing"
        if s.default is NO_DEFAULT:
            return None, f"{arch}.{s.key} is missing: llama.cpp aborts in build_moe_ffn (gating NONE)"
        return (s.default(m) if callable(s.default) else s.default), None
    return m.get(s.key), None


def _gating(arch: str, s, m: _Meta):
    value, err = _setting(arch, s, m)
    if err or not isinstance(s, FromKey) or not m.has(s.key):
        return value, err
    raw = int(value or 0)
    if raw == 0 and s.none_is_default:
        return (s.default(m) if callable(s.default) else s.default), None
    name = GATING_NAMES.get(raw)
    if s.only and name != s.only:
        return None, f"llama.cpp refuses this file: {arch} needs {s.key} {s.only}, the file says {name or raw}"
    if name is None:
        return None, f"{arch}.{s.key} = {raw} is no gating function: llama.cpp aborts in build_moe_ffn"
    return name, None


def _moe_layers(arch: str, rule: Layers, m: _Meta, n_expert: int, router_layers: set[int]):
    """(MoE layers of the main graph, error)."""
    main = range(m.n_main)
    if rule.kind == "never" or n_expert <= 0:
        return [], None
    if rule.kind == "all":
        return list(main), None
    if rule.kind == "router":
        return [i for i in main if i in router_layers], None
    if rule.kind in ("dense_lead", "ernie"):
        if not m.has("leading_dense_block_count") and rule.default is REQUIRED:
            return [], f"llama.cpp refuses this file: {arch}.leading_dense_block_count is missing"
        lead = int(m.get("leading_dense_block_count", 0) or 0)
        if rule.kind == "dense_lead":
            return [i for i in main if i >= lead], None
    if rule.kind in ("ernie", "step"):
        if not m.has("interleave_moe_layer_step"):
            return [], f"llama.cpp refuses this file: {arch}.interleave_moe_layer_step is missing"
        step = int(m.get("interleave_moe_layer_step", 0) or 0)
        if rule.kind == "ernie":
            if step <= 0:  # ernie4-5-moe.cpp:26
                return [], f"{arch}.interleave_moe_layer_step is 0: llama.cpp asserts"
            return [i for i in main if i >= lead and (i + 1) % step == 0], None
        return [i for i in main if step > 0 and (i + 1) % step == 0], None
    if rule.kind == "every_n":
        n = int(m.get("moe_every_n_layers", 0) or 0)
        return [i for i in main if n > 0 and i % n == 1], None
    if rule.kind == "ffn":
        n_ff = m.per_layer("feed_forward_length")
        return [i for i in main if n_ff[i] > 0], None
    raise ValueError(f"unknown layer rule {rule.kind!r}")


def _check_expert_counts(p: Path, arch: str, n_expert: int, used: list[int], n_groups: int, n_group_used: int):
    """llama-model.cpp:1336-1374 asserts these for every arch (GGML_ASSERT aborts the
    process): refuse such a file before llama.cpp sees it."""
    if arch in ("hunyuan_vl", "hunyuan-dense") and n_expert <= 1:
        return  # llama-model.cpp:1337-1342: treated as dense
    k_max = max(used, default=0)
    if k_max > n_expert or (n_expert > 0 and k_max == 0):
        raise ModelFileError(f"invalid MoE metadata in {p}: {k_max} experts used per token of {n_expert}")
    if n_expert > 1024:
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert} experts (llama.cpp allows at most 1024)")
    if (n_expert == 0 and n_groups) or (n_expert and n_groups >= n_expert) or (n_groups > 1 and (
            n_expert % n_groups or not 0 < n_group_used < n_groups)):
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert} experts in {n_groups} groups, "
                             f"{n_group_used} groups used per token")


# GGUF value types -> item size in bytes (8: string, 9: array; gguf.h)
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGML_MAX_DIMS = 4


def check_gguf_layout(path: str | os.PathLike) -> None:
    """Walk a GGUF's header (metadata and tensor table) checking every count and length
    against the bytes the file has, before a reader trusts them: one flipped byte in an
    array's length makes gguf's reader loop over trillions of items (until the process is
    killed for its memory). A ModelFileError names the first field that does not fit."""
    import mmap  # noqa: PLC0415
    import struct  # noqa: PLC0415

    p = Path(path)

    def bad(what: str):
        return ModelFileError(f"damaged GGUF file {p}: {what} does not fit in the file")

    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise bad("the header")
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = 4

        def take(fmt: str, what: str):
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise bad(what)
            out = struct.unpack_from("<" + fmt, buf, pos)
            pos += n
            return out[0] if len(out) == 1 else out

        def skip(n: int, what: str) -> None:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise bad(what)
            pos += n

        def string(what: str) -> None:
            skip(take("Q", what), what)

        def value(vtype: int, what: str, depth: int = 0) -> None:
            if vtype in _GGUF_SIZES:
                skip(_GGUF_SIZES[vtype], what)
            elif vtype == 8:
                string(what)
            elif vtype == 9 and depth == 0:
                itype, count = take("I", what), take("Q", what)
                if itype in _GGUF_SIZES:
                    skip(count * _GGUF_SIZES[itype], f"{what} ({count} items)")
                elif itype in (8, 9):
                    if count * 8 > size - pos:
                        raise bad(f"{what} ({count} items)")
                    for _ in range(count):
                        value(itype, what, depth + 1)
                else:
                    raise ModelFileError(f"damaged GGUF file {p}: {what} has items of unknown type {itype}")
            else:
                raise ModelFileError(f"damaged GGUF file {p}: {what} has a value of unknown type {vtype}")

        version = take("I", "the version")
        if version not in (2, 3):
            raise ModelFileError(f"unsupported GGUF version {version} in {p} (llama.cpp reads versions 2 and 3)")
        n_tensors, n_kv = take("Q", "the tensor count"), take("Q", "the metadata count")
        if n_kv * 12 > size - pos or n_tensors * 24 > size - pos:
            raise bad(f"{n_kv} metadata entries and {n_tensors} tensors")
        for i in range(n_kv):
            string(f"metadata key {i}")
            value(take("I", f"metadata entry {i}"), f"metadata entry {i}")
        for i in range(n_tensors):
            string(f"tensor {i}'s name")
            n_dims = take("I", f"tensor {i}")
            if not 1 <= n_dims <= GGML_MAX_DIMS:
                raise ModelFileError(f"damaged GGUF file {p}: tensor {i} has {n_dims} dimensions")
            skip(8 * n_dims + 4 + 8, f"tensor {i}")
    finally:
        buf.close()


_SPLIT_NAME = re.compile(r"^(.+)-(\d{5})-of-(\d{5})\.gguf$")


def _split_parts(p: Path, reader) -> list:
    """[(path, header)] of every part of a split model (llama.cpp's gguf-split naming,
    NAME-00001-of-0000N.gguf, metadata in the first part), or just this file."""
    from .gguf_header import Header  # noqa: PLC0415

    count = int(_field(reader, "split.count", 0) or 0)
    if count <= 1:
        return [(p, reader)]
    m = _SPLIT_NAME.match(p.name)
    if not m or int(m.group(2)) != 1 or int(m.group(3)) != count:
        raise ModelFileError(f"{p} is one part of a model split in {count}: give its first part "
                             f"(NAME-00001-of-{count:05d}.gguf), with the others beside it")
    parts = [(p, reader)]
    for i in range(2, count + 1):
        q = p.with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf")
        if not q.is_file():
            raise ModelFileError(f"split model {p.name}: part {i} of {count} is missing ({q.name} beside it)")
        check_gguf_layout(q)
        try:
            parts.append((q, Header(q)))
        except Exception:
            raise ModelFileError(f"damaged or truncated GGUF file {q} (its metadata cannot be read)") from None
    return parts


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    from .gguf_header import Header  # noqa: PLC0415  (keeps `import moeviz` light)

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"model path is not a file: {p}")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"not a GGUF file (bad magic {magic!r}): {p}")
    check_gguf_layout(p)
    try:
        reader = Header(p)   # gguf's GGUFReader takes seconds over a 150k-token vocabulary
    except Exception:
        raise ModelFileError(f"damaged or truncated GGUF file {p} (its metadata cannot be read)") from None
    arch = str(_field(reader, "general.architecture", "unknown"))
    spec = ARCHS.get(arch)

    router_layers, shared_layers, bias_layers = set(), set(), set()
    total, expert_params, expert_bytes, other_bytes, data_end = 0, 0, 0, 0, 0
    types: dict[str, int] = {}
    names: set[str] = set()
    parts = _split_parts(p, reader)
    for part, t in ((part, t) for part, header in parts for t in header.tensors):
        n = int(t.n_elements)
        total += n
        names.add(t.name)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + n
        if part is p:
            data_end = max(data_end, int(t.data_offset) + int(t.n_bytes))
        elif int(t.data_offset) + int(t.n_bytes) > part.stat().st_size:
            raise ModelFileError(f"truncated GGUF file {part}: tensor {t.name} ends past the end of the file")
        if m := _ROUTER_TENSOR.match(t.name):
            router_layers.add(int(m.group(1)))
        if _EXPERT_TENSOR.match(t.name):
            expert_params += n
            expert_bytes += int(t.n_bytes)
        else:
            other_bytes += int(t.n_bytes)
        if m := _SHARED_TENSOR.match(t.name):
            shared_layers.add(int(m.group(1)))
        if m := _BIAS_TENSOR.match(t.name):
            bias_layers.add(int(m.group(1)))
    if data_end > p.stat().st_size:
        raise ModelFileError(f"truncated GGUF file {p}: tensor data ends at byte {data_end}, file has {p.stat().st_size}")

    meta = _Meta(reader, arch, names)
    n_layer = meta.n_layer
    n_expert = int(meta.get("expert_count", 0) or 0)
    used = meta.per_layer("expert_used_count")
    errors: list[str] = []
    if spec is None:
        # Unknown architecture: layers with a router, settings as the metadata says.
        moe = [i for i in sorted(router_layers) if i < meta.n_main] if n_expert else []
        gating = GATING_NAMES.get(int(meta.get("expert_gating_func", 0) or 0), "softmax")
        norm = meta.get("expert_weights_norm")
        norm = bool(norm) if norm is not None else None
        scale = meta.get("expert_weights_scale", 0.0)
        selection_bias = bool(bias_layers & set(moe))
        k_by_layer = [used[0] if used else 0] * len(moe)
        decoding, moe_calls, notes = "causal", 1, []
    else:
        moe, err = _moe_layers(arch, spec.layers, meta, n_expert, router_layers)
        gating, gerr = _gating(arch, spec.gating, meta)
        norm, nerr = _setting(arch, spec.norm, meta)
        scale, serr = _setting(arch, spec.scale, meta)
        notes = list(spec.notes)
        token_routed: list[int] = []
        if arch == "deepseek4":
            # deepseek4.cpp:51 (required), 155-160, 1289-1292: these layers route by token id
            n_hash = int(meta.get("hash_layer_count", 0) or 0)
            if not meta.has("hash_layer_count"):
                err = err or f"llama.cpp refuses this file: {arch}.hash_layer_count is missing"
            notes = [f"layers {', '.join(map(str, range(min(n_hash, meta.n_main))))} pick experts by token id "
                     "(ffn_gate_tid2eid), not top-k of the router; their weights are still the router's "
                     "probabilities"] if n_hash else []
            token_routed = [il for il in range(min(n_hash, meta.n_main))]
        if moe or err:  # a file nothing routes in never reaches the settings
            errors += [e for e in (err, gerr, nerr, serr) if e]
        if gating == "softmax_weight":
            norm = True  # a softmax over the selected logits: they sum to 1 although norm_w is false
        norm = bool(norm) if norm is not None else None
        selection_bias = spec.bias != "none" and bool(bias_layers & set(moe))
        # Most graphs pass n_expert_used = hparams.n_expert_used() (layer 0's) to every layer.
        k_by_layer = [used[i] for i in moe] if spec.per_layer_k else [used[0] if used else 0] * len(moe)
        decoding, moe_calls = spec.decoding, spec.moe_calls
    n_expert_used = max(k_by_layer) if k_by_layer else (used[0] if used else 0)
    n_groups = int(meta.get("expert_group_count", 0) or 0)
    _check_expert_counts(p, arch, n_expert, used, n_groups, int(meta.get("expert_group_used_count", 0) or 0))
    if moe and not all(1 <= k <= n_expert for k in k_by_layer):
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert_used} experts used per token of {n_expert}")
    # Active parameters: everything but the unselected share of routed experts
    # (embeddings count in full, as model cards do).
    active = total - (expert_params * (n_expert - n_expert_used) // n_expert if n_expert else 0)
    n_vocab = meta.get("vocab_size") or _array_len(reader, "tokenizer.ggml.tokens")
    moe_set = set(moe)
    shared_in = shared_layers & moe_set if moe_set else shared_layers
    n_shared = int(meta.get("expert_shared_count", 0) or 0) or (1 if shared_in else 0)
    return ModelInfo(
        path=str(p), name=str(_field(reader, "general.name", p.stem)), architecture=arch,
        file_size=sum(part.stat().st_size for part, _ in parts), n_layer=n_layer, n_embd=int(meta.get("embedding_length", 0) or 0),
        n_vocab=int(n_vocab), n_ctx_train=int(meta.get("context_length", 0) or 0),
        n_expert=n_expert, n_expert_used=n_expert_used, moe_layers=moe,
        dense_layers=[i for i in range(meta.n_main) if i not in moe_set],
        n_shared_experts=n_shared, gating=gating, weights_normalized=norm,
        weights_scale=float(scale or 0.0) or 1.0,  # build_moe_ffn: 0 (and 1) mean "not scaled"
        n_expert_groups=n_groups, n_group_used=int(meta.get("expert_group_used_count", 0) or 0),
        total_params=int(total), active_params=int(active), expert_params=int(expert_params),
        tensor_types=types, expert_bytes=expert_bytes, file_bytes_other=other_bytes,
        chat_template=_field(reader, "tokenizer.chat_template"),
        selection_bias=selection_bias, causal=decoding == "causal", decoding=decoding,
        nextn_layers=list(range(meta.n_main, n_layer)), moe_calls_per_layer=moe_calls,
        n_expert_used_per_layer=k_by_layer if len(set(k_by_layer)) > 1 else None,
        known_architecture=spec is not None, load_error="; ".join(errors) or None, routing_notes=notes,
        token_routed_layers=[il for il in token_routed if il in set(moe)] if spec is not None else [],
        kept_experts=_kept_experts(reader, len(moe), n_expert),
    )


def _kept_experts(reader, n_layers: int, n_expert: int) -> list[list[int]] | None:
    """moeviz prune's record (moeviz/prune.py): per MoE layer, the original ids of the experts kept."""
    flat = _field(reader, "moeviz.prune.kept_experts")
    if not flat or not n_layers or len(flat) != n_layers * n_expert:
        return None
    return [list(flat[i * n_expert:(i + 1) * n_expert]) for i in range(n_layers)]


def human_count(n: int) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def describe(info: ModelInfo) -> str:
    """The human-readable `moeviz info` text."""
    lines = [f"{info.name}  ({info.architecture}, {info.file_size / 2**20:.1f} MiB)"]
    lines.append(f"  layers        {info.n_layer}  (embedding {info.n_embd}, vocabulary {info.n_vocab}, trained context {info.n_ctx_train})"
                 + (f"; MTP layers {','.join(map(str, info.nextn_layers))} (not run by the main graph)" if info.nextn_layers else ""))
    if not info.is_moe:
        lines.append("  dense model: no routed experts (moeviz needs a Mixture-of-Experts model to record routing)")
    else:
        moe = info.moe_layers
        span = f"{moe[0]}-{moe[-1]}" if moe == list(range(moe[0], moe[-1] + 1)) else ",".join(map(str, moe))
        lines.append(f"  MoE layers    {len(moe)} ({span})" + (f"; dense layers {','.join(map(str, info.dense_layers))}" if info.dense_layers else ""))
        top_k = (f"top-{info.n_expert_used}" if info.n_expert_used_per_layer is None
                 else "top-" + "/".join(map(str, info.n_expert_used_per_layer)) + " by layer")
        lines.append(f"  experts       {info.n_expert} routed, {top_k} per token"
                     + (f", {info.n_shared_experts} shared" if info.n_shared_experts else ""))
        norm = {True: "renormalized to sum 1", False: "not renormalized", None: "normalization unknown"}[info.weights_normalized]
        lines.append(f"  gating        {info.gating or 'unknown'}, weights {norm}"
                     + (f", scaled x{info.weights_scale:g}" if info.weights_scale != 1.0 else "")
                     + (", selection bias" if info.selection_bias else ""))
        if info.n_expert_groups > 1:
            lines.append(f"  expert groups {info.n_expert_groups}, {info.n_group_used} used per token")
        if info.kept_experts:
            lines.append(f"  pruned        by moeviz prune: {info.n_expert} experts kept per MoE layer (kept_experts in --json: "
                         "their original ids)")
        for note in info.routing_notes:
            lines.append(f"  note          {note}")
    if not info.causal:
        lines.append(f"  decoding      {info.decoding} model: not decoded left to right")
    if info.load_error:
        lines.append(f"  problem       {info.load_error}")
    lines.append(f"  parameters    {human_count(info.total_params)} total, {human_count(info.active_params)} active per token"
                 + (f" ({human_count(info.expert_params)} in routed experts)" if info.expert_params else ""))
    if info.expert_bytes:
        per_layer = info.expert_bytes / max(1, len(info.moe_layers)) / 2**20
        lines.append(f"  memory        routed experts {info.expert_bytes / 2**20:.1f} MiB ({per_layer:.1f} MiB per MoE layer), "
                     f"everything else {info.file_bytes_other / 2**20:.1f} MiB")
        lines.append("                --cpu-moe keeps all routed experts in CPU memory; --n-cpu-moe N those of the first N layers;"
                     " the rest follows --n-gpu-layers")
    lines.append("  tensor types  " + ", ".join(f"{k} {human_count(v)}" for k, v in sorted(info.tensor_types.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)
