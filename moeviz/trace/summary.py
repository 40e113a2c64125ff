"""Running routing figures a live run reports: experts hit and dormant experts."""
from __future__ import annotations

import numpy as np


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
        used = self.counts > 0
        dormant_per_layer = (~used).sum(axis=1)
        total = self.counts.size
        return {"experts_hit": int(used.sum()), "dormant": int(total - used.sum()),
                "dormant_fraction": float((total - used.sum()) / total) if total else 0.0,
                "dormant_per_layer": dormant_per_layer.tolist()}
