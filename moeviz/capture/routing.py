"""What a capture backend hands back for one decoded batch."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import RunFailed


class MissingRouting(RunFailed, RuntimeError):
    """A (token, MoE layer) pair had no routing: never return a silently short trace."""


@dataclasses.dataclass
class BatchRouting:
    """Routing for the tokens of one llama_decode call, in batch order.

    expert_ids: int32 [n_tokens, n_moe_layers, k], experts in llama.cpp's selection
    order (descending selection score). weights: float32, same shape, the gate
    weights actually applied (after normalization and scaling). probs: float32
    [n_tokens, n_moe_layers, n_expert] router scores over all experts, or None.
    candidate_ids / candidate_probs: int32 / float32 [n_tokens, N], each row's top-N
    next tokens by probability (filled by the engine from the logits), or None;
    candidate_texts: {token id: its text} for every id in candidate_ids.
    """

    expert_ids: np.ndarray
    weights: np.ndarray
    probs: np.ndarray | None = None
    candidate_ids: np.ndarray | None = None
    candidate_probs: np.ndarray | None = None
    candidate_texts: dict[int, str] | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.expert_ids.shape[0])


class LayerChunks:
    """Per-MoE-layer row chunks collected over a batch's ubatches, then stacked."""

    def __init__(self, moe_layers: list[int], n_expert_used: int, n_expert: int, want_probs: bool):
        self.moe_layers = moe_layers
        self.k = n_expert_used
        self.n_expert = n_expert
        self.want_probs = want_probs
        self.reset()

    def reset(self) -> None:
        n = len(self.moe_layers)
        self.ids: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.weights: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.probs: list[list[np.ndarray]] = [[] for _ in range(n)]

    def stack(self, n_tokens: int) -> BatchRouting:
        L = len(self.moe_layers)
        ids = np.empty((n_tokens, L, self.k), np.int32)
        w = np.empty((n_tokens, L, self.k), np.float32)
        p = np.empty((n_tokens, L, self.n_expert), np.float32) if self.want_probs else None
        for li, il in enumerate(self.moe_layers):
            parts = [("expert ids", self.ids[li], ids), ("weights", self.weights[li], w)]
            if p is not None:
                parts.append(("probabilities", self.probs[li], p))
            for what, chunks, out in parts:
                got = sum(c.shape[0] for c in chunks)
                if got != n_tokens:
                    raise MissingRouting(
                        f"layer {il}: captured {what} for {got} of {n_tokens} tokens")
                if chunks:
                    out[:, li, :] = np.concatenate(chunks, axis=0)
        return BatchRouting(ids, w, p)
