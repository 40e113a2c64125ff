"""Same-token diff: how two traces of the same tokens route them (docs/analysis.md, "Diff").

The usual pair is a run and its same-token replay (`moeviz record --tokens-from`) on
another quantization, another top-k or with experts masked. Per MoE layer and over
all layers: exact top-k set agreement, mean Jaccard of the selected sets, top-1
agreement, weight L1 distance; with next-token candidates in both, the mean KL
divergence and top-1 agreement of the next-token distributions. Pure numpy, in
chunks of tokens (k_a x k_b comparisons, never an [n, L, E] array).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .routing import AnalysisError

CHUNK_TOKENS = 16384
# Probability floor for the KL's "everything else" bucket (and a candidate whose float32
# probability underflowed to 0): two top-N lists that cover all the mass must not give
# an infinite divergence from rounding alone.
KL_FLOOR = 1e-12
ROUTING_FIGURES = ("set_agreement", "mean_jaccard", "top1_agreement", "weight_l1")


def check_same_tokens(a, b, names=("A", "B")) -> None:
    """Refuse traces that do not route the same token ids, or whose experts are not comparable."""
    na, nb = names
    for field in ("moe_layers", "n_expert"):
        if a.model.get(field) != b.model.get(field):
            raise AnalysisError(f"cannot diff {na} and {nb}: {na} has {field} {a.model.get(field)!r}, "
                                f"{nb} has {b.model.get(field)!r}")
    ta, tb = [t["id"] for t in a.tokens], [t["id"] for t in b.tokens]
    if ta != tb:
        if len(ta) != len(tb):
            raise AnalysisError(f"{na} has {len(ta)} tokens and {nb} {len(tb)}: diff needs two traces of the same "
                                "tokens (record one with --tokens-from the other)")
        i = next(i for i, (x, y) in enumerate(zip(ta, tb)) if x != y)
        raise AnalysisError(f"{na} and {nb} differ at token {i} (id {ta[i]} vs {tb[i]}): diff needs two traces of "
                            "the same tokens (record one with --tokens-from the other)")
    if not ta:
        raise AnalysisError(f"{na} has no tokens to diff")


def _top1(ids: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The selected expert with the largest gate weight (the first listed on a tie)."""
    return np.take_along_axis(ids, w.argmax(-1)[..., None], -1)[..., 0]


def routing_rows(ids_a, w_a, ids_b, w_b) -> dict:
    """Per (token, MoE layer): intersection size, Jaccard, same set, same top-1, weight L1."""
    ka, kb = ids_a.shape[-1], ids_b.shape[-1]
    eq = ids_a[..., :, None] == ids_b[..., None, :]              # [n, L, ka, kb]
    inter = eq.sum((-1, -2))
    jaccard = inter / (ka + kb - inter)
    w_b_at_a = (eq * w_b[..., None, :].astype(np.float64)).sum(-1)   # B's weight on each of A's experts (0: not in B)
    only_b = ~eq.any(-2)
    l1 = np.abs(w_a.astype(np.float64) - w_b_at_a).sum(-1) + (np.abs(w_b.astype(np.float64)) * only_b).sum(-1)
    return {"intersection": inter, "jaccard": jaccard, "same_set": (inter == ka) & (ka == kb),
            "same_top1": _top1(ids_a, w_a) == _top1(ids_b, w_b), "weight_l1": l1}


def candidate_rows(ids_a, p_a, ids_b, p_b) -> dict:
    """Per position: KL(P_A || P_B) of the next-token distributions coarsened to the
    ids both top-N lists hold plus one bucket for the rest, and the same top-1."""
    eq = ids_a[:, :, None] == ids_b[:, None, :]                  # [n, Na, Nb]
    common = eq.any(-1)                                          # A's candidates that B lists too
    pa = np.where(common, p_a.astype(np.float64), 0.0)
    pb = (eq * p_b[:, None, :].astype(np.float64)).sum(-1)       # B's probability of each of A's common ids
    rest_a = np.maximum(1.0 - pa.sum(-1), 0.0)
    rest_b = np.maximum(1.0 - pb.sum(-1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pa > 0, pa * np.log(pa / np.maximum(pb, KL_FLOOR)), 0.0).sum(-1)
        rest = np.where(rest_a > 0, rest_a * np.log(rest_a / np.maximum(rest_b, KL_FLOOR)), 0.0)
    return {"kl": terms + rest, "same_top1": ids_a[:, 0] == ids_b[:, 0], "common": common.sum(-1)}


def diff_traces(a, b, *, names=("A", "B"), tokens: bool = False) -> dict:
    """The diff of two traces of the same tokens (Trace objects). `tokens`: add per-token rows."""
    a, b = _original_ids(a, b), _original_ids(b, a)
    check_same_tokens(a, b, names)
    n, L = a.n_tokens, len(a.model["moe_layers"])
    sums = {f: np.zeros(L) for f in ROUTING_FIGURES}
    rows = []
    for s in range(0, n, CHUNK_TOKENS):
        e = min(n, s + CHUNK_TOKENS)
        r = routing_rows(a.expert_ids[s:e], a.weights[s:e], b.expert_ids[s:e], b.weights[s:e])
        sums["set_agreement"] += r["same_set"].sum(0)
        sums["mean_jaccard"] += r["jaccard"].sum(0)
        sums["top1_agreement"] += r["same_top1"].sum(0)
        sums["weight_l1"] += r["weight_l1"].sum(0)
        if tokens:
            rows.append(r)
    per_layer = {f: v / n for f, v in sums.items()}
    out = {
        "traces": list(names), "tokens": n, "prompt_tokens": a.n_prompt, "moe_layers": list(a.model["moe_layers"]),
        "k": [a.k, b.k], "models": [a.model.get("name"), b.model.get("name")],
        "mask": [[list(p) for p in a.mask], [list(p) for p in b.mask]],
        "per_layer": per_layer,
        "overall": {f: float(v.mean()) for f, v in per_layer.items()},
        "candidates": None,
        "candidates_note": None,
    }
    cand = None
    if a.candidate_ids is not None and b.candidate_ids is not None:
        cand = candidate_rows(a.candidate_ids, a.candidate_probs, b.candidate_ids, b.candidate_probs)
        out["candidates"] = {"n": [int(a.candidate_ids.shape[1]), int(b.candidate_ids.shape[1])],
                             "kl_mean": float(cand["kl"].mean()), "kl_max": float(cand["kl"].max()),
                             "top1_agreement": float(cand["same_top1"].mean())}
    else:
        missing = [nm for nm, t in zip(names, (a, b)) if t.candidate_ids is None]
        out["candidates_note"] = (f"no next-token candidates in {' and '.join(missing)} (record with --candidates N)")
    if tokens:
        out["per_token"] = _token_rows(a, b, rows, cand)
    return out


def _original_ids(t, other):
    """A run of a model pruned by `moeviz prune` names its experts by their new index; its
    model's kept_experts maps them back to the original's ids, so it diffs against the
    original's runs."""
    kept = t.model.get("kept_experts")
    if not kept or t.model.get("n_expert") == other.model.get("n_expert") or other.model.get("kept_experts"):
        return t
    K = np.asarray(kept)
    ids = K[np.arange(K.shape[0])[None, :, None], t.expert_ids]
    return dataclasses.replace(t, model={**t.model, "n_expert": other.model["n_expert"]}, expert_ids=ids)


def _token_rows(a, b, chunks: list[dict], cand: dict | None) -> list[dict]:
    layers = a.model["moe_layers"]
    same_set = np.concatenate([c["same_set"] for c in chunks])
    jac = np.concatenate([c["jaccard"] for c in chunks])
    top1 = np.concatenate([c["same_top1"] for c in chunks])
    l1 = np.concatenate([c["weight_l1"] for c in chunks])
    out = []
    for t, tok in enumerate(a.tokens):
        changed = np.flatnonzero(~same_set[t])
        row = {"index": t, "id": tok["id"], "text": tok["text"], "prompt": tok["prompt"],
               "changed_layers": [layers[i] for i in changed],
               "changes": [{"layer": layers[i],
                            "removed": sorted(set(a.expert_ids[t, i].tolist()) - set(b.expert_ids[t, i].tolist())),
                            "added": sorted(set(b.expert_ids[t, i].tolist()) - set(a.expert_ids[t, i].tolist()))}
                           for i in changed],
               "mean_jaccard": float(jac[t].mean()), "top1_agreement": float(top1[t].mean()),
               "weight_l1": float(l1[t].mean())}
        if cand is not None:
            row.update(kl=float(cand["kl"][t]), next_top1=[int(a.candidate_ids[t, 0]), int(b.candidate_ids[t, 0])])
        out.append(row)
    return out
