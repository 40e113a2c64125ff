"""Read a model's MoE shape from its GGUF file (metadata and tensor list only).

No llama.cpp needed: `moeviz info` works before the library is built, and the
engine uses the same description to know which layers to expect routing from.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

GATING_NAMES = {1: "softmax", 2: "sigmoid", 3: "softmax_weight", 4: "sqrt_softplus"}
# Archs whose graph hard-codes top-k renormalization (src/models/<arch>.cpp passes a
# literal to build_moe_ffn). Others read <arch>.expert_weights_norm.
_NORM_HARDCODED = {
    "llama": True, "mixtral": True, "qwen2moe": False, "qwen3moe": True, "qwen3vlmoe": True,
    "qwen35moe": True, "olmoe": False, "dbrx": True, "ernie4_5-moe": True, "hunyuan-moe": True,
    "gemma4": True, "granitemoe": True,
    "gpt-oss": True,  # softmax over the selected experts: sums to 1
}
# gpt-oss applies a softmax over the selected experts' logits instead.
_GATING_HARDCODED = {"gpt-oss": "softmax_weight"}
_EXPERT_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down|gate_up)_exps\.")
_ROUTER_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_gate_inp\.weight$")
_SHARED_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down)_shexp\.")


class ModelFileError(ValueError):
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
    dense_layers: list[int]
    n_shared_experts: int
    gating: str
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


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    import gguf  # noqa: PLC0415  (keeps `import moeviz` light)

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"model path is not a file: {p}")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"not a GGUF file (bad magic {magic!r}): {p}")
    try:
        reader = gguf.GGUFReader(p, "r")
    except Exception as e:
        raise ModelFileError(f"damaged or truncated GGUF file {p} (its metadata cannot be read)") from None
    arch = str(_field(reader, "general.architecture", "unknown"))

    def a(key, default=None):
        return _field(reader, f"{arch}.{key}", default)

    n_layer = int(a("block_count", 0))
    n_expert = int(a("expert_count", 0) or 0)
    n_expert_used = int(a("expert_used_count", 0) or 0)
    moe_layers, shared_layers, total, expert_params, expert_bytes, other_bytes = set(), set(), 0, 0, 0, 0
    types: dict[str, int] = {}
    data_end = 0
    for t in reader.tensors:
        n = int(t.n_elements)
        total += n
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + n
        data_end = max(data_end, int(t.data_offset) + int(t.n_bytes))
        if m := _ROUTER_TENSOR.match(t.name):
            moe_layers.add(int(m.group(1)))
        if _EXPERT_TENSOR.match(t.name):
            expert_params += n
            expert_bytes += int(t.n_bytes)
        else:
            other_bytes += int(t.n_bytes)
        if m := _SHARED_TENSOR.match(t.name):
            shared_layers.add(int(m.group(1)))
    if data_end > p.stat().st_size:
        raise ModelFileError(f"truncated GGUF file {p}: tensor data ends at byte {data_end}, file has {p.stat().st_size}")
    moe = sorted(moe_layers) if n_expert else []
    if moe and not 1 <= n_expert_used <= n_expert:
        # llama.cpp asserts (aborts the process) on this; refuse it before loading
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert_used} experts used per token of {n_expert}")
    # Active parameters: everything but the unselected share of routed experts
    # (embeddings count in full, as model cards do).
    active = total - (expert_params * (n_expert - n_expert_used) // n_expert if n_expert else 0)
    gating = _GATING_HARDCODED.get(arch) or GATING_NAMES.get(int(a("expert_gating_func", 0) or 0), "softmax")
    norm = a("expert_weights_norm")
    n_vocab = a("vocab_size") or len(_field(reader, "tokenizer.ggml.tokens", []) or [])
    n_shared = int(a("expert_shared_count", 0) or 0) or (1 if shared_layers else 0)
    return ModelInfo(
        path=str(p), name=str(_field(reader, "general.name", p.stem)), architecture=arch,
        file_size=p.stat().st_size, n_layer=n_layer, n_embd=int(a("embedding_length", 0)),
        n_vocab=int(n_vocab), n_ctx_train=int(a("context_length", 0)),
        n_expert=n_expert, n_expert_used=n_expert_used, moe_layers=moe,
        dense_layers=[i for i in range(n_layer) if i not in set(moe)],
        n_shared_experts=n_shared, gating=gating,
        weights_normalized=bool(norm) if norm is not None else _NORM_HARDCODED.get(arch),
        weights_scale=float(a("expert_weights_scale", 0.0) or 0.0) or 1.0,
        n_expert_groups=int(a("expert_group_count", 0) or 0),
        n_group_used=int(a("expert_group_used_count", 0) or 0),
        total_params=int(total), active_params=int(active), expert_params=int(expert_params),
        tensor_types=types, expert_bytes=expert_bytes, file_bytes_other=other_bytes, chat_template=_field(reader, "tokenizer.chat_template"),
    )


def human_count(n: int) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def describe(info: ModelInfo) -> str:
    """The human-readable `moeviz info` text."""
    lines = [f"{info.name}  ({info.architecture}, {info.file_size / 2**20:.1f} MiB)"]
    lines.append(f"  layers        {info.n_layer}  (embedding {info.n_embd}, vocabulary {info.n_vocab}, trained context {info.n_ctx_train})")
    if not info.is_moe:
        lines.append("  dense model: no routed experts (moeviz needs a Mixture-of-Experts model to record routing)")
    else:
        moe = info.moe_layers
        span = f"{moe[0]}-{moe[-1]}" if moe == list(range(moe[0], moe[-1] + 1)) else ",".join(map(str, moe))
        lines.append(f"  MoE layers    {len(moe)} ({span})" + (f"; dense layers {','.join(map(str, info.dense_layers))}" if info.dense_layers else ""))
        lines.append(f"  experts       {info.n_expert} routed, top-{info.n_expert_used} per token"
                     + (f", {info.n_shared_experts} shared" if info.n_shared_experts else ""))
        norm = {True: "renormalized to sum 1", False: "not renormalized", None: "normalization unknown"}[info.weights_normalized]
        lines.append(f"  gating        {info.gating}, weights {norm}" + (f", scaled x{info.weights_scale:g}" if info.weights_scale != 1.0 else ""))
        if info.n_expert_groups > 1:
            lines.append(f"  expert groups {info.n_expert_groups}, {info.n_group_used} used per token")
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
