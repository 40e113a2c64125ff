"""Prune a GGUF's routed experts: keep N per MoE layer (`moeviz prune`, prune_cli.py).

llama.cpp needs one expert count for every layer, so every MoE layer keeps N. What is
sliced along the expert axis (ggml's last dimension, numpy's first), in every MoE layer:
the expert matrices and their biases (ffn_{gate,up,down,gate_up}_exps.*), the router's
rows (ffn_gate_inp.weight) and its bias, and the selection bias (exp_probs_b). Each
expert's part of a tensor is one contiguous slab of whole rows, so quantized blocks are
copied whole, byte for byte, whatever the type. `<arch>.expert_count` becomes N (and
`expert_used_count` N where it was larger); everything else is copied. The kept experts
(original ids, ascending: the new expert i is kept[i]) are written as
`moeviz.prune.kept_experts` (one flat int32 array, MoE layer by MoE layer) and read back
by `moeviz info` (`kept_experts`).

Models with expert groups keep N / groups experts in each group, so the groups the router
picks from stay the same size. Architectures that route by token id or call the experts
twice per layer are refused.

Equivalence: with softmax gating whose selected weights are renormalized (the demo model,
Mixtral, Qwen3-MoE), with sigmoid gating, and with gpt-oss's softmax over the selected
logits, the pruned model computes what the original does with the dropped experts
masked (llama_moe_set_mask adds -inf to their selection scores). With softmax gating that
is not renormalized (qwen2moe, olmoe), the pruned softmax runs over fewer experts, so every
kept weight grows by (sum over all experts) / (sum over the kept ones): the selection of
the first token's first MoE layer is the same, the weights and what follows differ
(tests/test_prune.py measures it).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from .errors import UserError
from .files import replaced_whole
from .gguf_info import read_model_info

KEPT_KEY = "moeviz.prune.kept_experts"
BEFORE_KEY = "moeviz.prune.expert_count_before"
_SLICED = re.compile(r"^blk\.(\d+)\.(ffn_(gate|up|down|gate_up)_exps\.(weight|bias|scale)|ffn_gate_inp\.(weight|bias)"
                     r"|exp_probs_b(\.bias)?)$")


class PruneError(UserError, ValueError):
    pass


@dataclasses.dataclass
class PrunePlan:
    kept: list[list[int]]          # per MoE layer, the kept ids of the file given (ascending)
    moe_layers: list[int]
    n_expert: int


def choose_experts(info, routings, keep: int, by: str = "count") -> PrunePlan:
    """Keep the `keep` experts per MoE layer selected most often (or with the largest summed
    gate weight) in `routings` (ties to the lower id); per group when the model has groups."""
    E, L = info.n_expert, len(info.moe_layers)
    score = np.zeros((L, E))
    for r in routings:
        ids = np.asarray(r.expert_ids)
        w = np.ones(ids.shape) if by == "count" else np.asarray(r.weights, np.float64)
        for li in range(L):
            score[li] += np.bincount(ids[:, li].reshape(-1), weights=w[:, li].reshape(-1), minlength=E)
    groups = max(1, info.n_expert_groups)
    size, per_group = E // groups, keep // groups
    kept = []
    for li in range(L):
        chosen = []
        for g in range(groups):
            ids = np.arange(g * size, (g + 1) * size)
            chosen += ids[np.argsort(-score[li, ids], kind="stable")[:per_group]].tolist()
        kept.append(sorted(chosen))
    return PrunePlan(kept, list(info.moe_layers), E)


def drop_experts(info, pairs: list[tuple[int, int]]) -> PrunePlan:
    """Keep everything but `pairs` ((model layer, expert)); every MoE layer must lose as many."""
    E = info.n_expert
    dropped = {layer: set() for layer in info.moe_layers}
    for layer, expert in pairs:
        if layer not in dropped:
            raise PruneError(f"--drop {layer}:{expert}: layer {layer} is not a MoE layer "
                             f"(MoE layers: {', '.join(map(str, info.moe_layers))})")
        if not 0 <= expert < E:
            raise PruneError(f"--drop {layer}:{expert}: expert {expert} is outside [0, {E})")
        dropped[layer].add(expert)
    counts = {len(v) for v in dropped.values()}
    if len(counts) != 1:
        raise PruneError("--drop must drop as many experts from every MoE layer (llama.cpp needs one expert count "
                         f"for all layers); it drops {', '.join(f'{len(v)} from layer {k}' for k, v in dropped.items())}")
    return PrunePlan([[e for e in range(E) if e not in dropped[layer]] for layer in info.moe_layers],
                     list(info.moe_layers), E)


def check_plan(info, plan: PrunePlan) -> int:
    """N, after refusing what llama.cpp could not load or what would not be the same routing."""
    n = len(plan.kept[0]) if plan.kept else 0
    if not info.is_moe:
        raise PruneError(f"{info.path} has no routed experts to prune")
    if info.token_routed_layers or info.moe_calls_per_layer > 1:
        raise PruneError(f"{info.architecture} routes some experts by token id or calls its experts twice per layer: "
                         "pruning it is not supported")
    if not 1 <= n < info.n_expert:
        raise PruneError(f"keep between 1 and {info.n_expert - 1} experts per layer (the model has {info.n_expert}), "
                         f"not {n}")
    groups = max(1, info.n_expert_groups)
    if groups > 1:
        size = info.n_expert // groups
        for layer, kept in zip(plan.moe_layers, plan.kept):
            per = np.bincount(np.asarray(kept) // size, minlength=groups)
            if (per != n // groups).any() or n % groups:
                raise PruneError(f"{info.architecture} picks experts in {groups} groups: keep the same number in "
                                 f"each group (a multiple of {groups}); layer {layer} keeps {per.tolist()}")
    return n


def prune_gguf(src: str | os.PathLike, dst: str | os.PathLike, plan: PrunePlan) -> dict:
    """Write the pruned model to `dst` (temporary file, then renamed); returns sizes and counts."""
    import gguf  # noqa: PLC0415

    from .gguf_header import Header  # noqa: PLC0415

    src, dst = Path(src), Path(dst)
    info = read_model_info(src)
    n = check_plan(info, plan)
    if dst.resolve() == src.resolve():
        raise PruneError("--out must be another file than --model")
    header = Header(src)
    data = np.memmap(src, np.uint8, mode="r")
    arch = info.architecture
    layer_of = {layer: i for i, layer in enumerate(plan.moe_layers)}
    before = info.kept_experts if getattr(info, "kept_experts", None) else None
    original = [[before[i][e] for e in kept] for i, kept in enumerate(plan.kept)] if before else plan.kept
    try:
        with replaced_whole(dst) as tmp:
            w = gguf.GGUFWriter(tmp, arch)
            for key, field in header.fields.items():
                if key in ("general.architecture", KEPT_KEY, BEFORE_KEY):
                    continue
                value = field.contents()
                if key == f"{arch}.expert_count":
                    value = n
                elif key == f"{arch}.expert_used_count":
                    value = [min(v, n) for v in value] if isinstance(value, list) else min(value, n)
                elif key == "general.alignment":
                    w.data_alignment = int(value)
                vtype = gguf.GGUFValueType(field.vtype)
                w.add_key_value(key, value, vtype, gguf.GGUFValueType(field.item_type) if field.vtype == 9 else None)
            w.add_key_value(KEPT_KEY, [e for kept in original for e in kept], gguf.GGUFValueType.ARRAY,
                            gguf.GGUFValueType.INT32)
            if BEFORE_KEY in header.fields:
                w.add_key_value(BEFORE_KEY, header.fields[BEFORE_KEY].contents(), gguf.GGUFValueType.UINT32)
            else:
                w.add_key_value(BEFORE_KEY, info.n_expert, gguf.GGUFValueType.UINT32)
            parts = []
            for t in header.tensors:
                raw = data[t.data_offset:t.data_offset + t.n_bytes]
                m = _SLICED.match(t.name)
                shape = list(t.shape)
                if m and int(m.group(1)) in layer_of:
                    if shape[-1] != info.n_expert:
                        raise PruneError(f"tensor {t.name} has {shape[-1]} entries on its expert axis, not {info.n_expert}")
                    keep = plan.kept[layer_of[int(m.group(1))]]
                    shape[-1] = n
                    parts.append((raw.reshape(info.n_expert, -1), keep))
                else:
                    parts.append((raw, None))
                w.add_tensor_info(t.name, list(reversed(shape)), np.dtype(np.float32), t.n_bytes * shape[-1] // t.shape[-1],
                                  raw_dtype=t.tensor_type)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for raw, keep in parts:          # one tensor in memory at a time: each expert's slab, whole
                w.write_tensor_data(np.ascontiguousarray(raw if keep is None else raw[keep]))
            w.close()
    finally:
        del data
        header.close()
    return {"size_before": src.stat().st_size, "size_after": dst.stat().st_size, "kept": original,
            "n_expert_before": info.n_expert, "n_expert": n}


def kept_share(plan: PrunePlan, routings) -> float:
    """Share of the expert selections in `routings` whose expert the plan keeps."""
    E = plan.n_expert
    keep = np.zeros((len(plan.kept), E), bool)
    for li, kept in enumerate(plan.kept):
        keep[li, kept] = True
    hit = total = 0
    for r in routings:
        ids = np.asarray(r.expert_ids)
        hit += int(keep[np.arange(ids.shape[1])[None, :, None], ids].sum())
        total += ids.size
    return hit / total if total else float("nan")
