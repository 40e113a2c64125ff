"""Running routing figures a live run reports: experts hit and dormant experts.

`dormant` is the one definition of dormant experts (cells with a zero selection
count); the live summary, the analysis (`moeviz stats`, comparisons) and the link
preview all use it. The page's is web/js/figures.js.
"""
from __future__ import annotations

import numpy as np


def dormant(counts) -> dict:
    """Dormant experts of selection counts [n_moe_layers, n_expert]: those never selected.

    Returns `experts` (per layer, the dormant expert ids), `count` and `fraction` per
    layer (arrays), `total` and `total_fraction` over every (layer, expert) cell."""
    never = np.asarray(counts) == 0
    L, E = never.shape
    count = never.sum(axis=1)
    total = int(count.sum())
    return {"experts": [np.flatnonzero(row).tolist() for row in never], "count": count,
            "fraction": count / E if E else np.zeros(L), "total": total,
            "total_fraction": total / never.size if never.size else 0.0}


class ExpertCounter:
    """Selection counts per (MoE layer, expert), updated token by token."""

    def __init__(self, n_moe_layers: int, n_expert: int):
        self.counts = np.zeros((n_moe_layers, n_expert), np.int64)
        self._layer_offsets = (np.arange(n_moe_layers) * n_expert)[:, None]

    def add(self, expert_ids: np.ndarray) -> None:
        """expert_ids: [n_tokens, n_moe_layers, k] or [n_moe_layers, k]."""
        ids = expert_ids.reshape(-1, *expert_ids.shape[-2:])
        flat = (ids + self._layer_offsets[None]).ravel()
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def summary(self) -> dict:
        d = dormant(self.counts)
        return {"experts_hit": self.counts.size - d["total"], "dormant": d["total"],
                "dormant_fraction": float(d["total_fraction"]), "dormant_per_layer": d["count"].tolist()}
