"""Next-token candidates: each position's top-N tokens under the model's own distribution.

The distribution is softmax(logits) at temperature 1 over the whole vocabulary, before
any sampler (top-k, top-p, temperature) touches it: what the model predicts, not what
the sampler drew from. From llama.cpp's float32 logits, the normalizer summed in float64.
"""
from __future__ import annotations

import numpy as np

from .sampling import SettingsError

MAX_CANDIDATES = 1000


def check_candidates(n, n_vocab: int) -> int:
    """N itself when it is 0 (off) or 1..min(n_vocab, MAX_CANDIDATES); else SettingsError."""
    top = min(n_vocab, MAX_CANDIDATES)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= top:
        raise SettingsError(f"candidates must be an integer from 0 (off) to {top}, got {n!r}")
    return n


def top_candidates(logits: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """logits [rows, n_vocab] -> (ids int32 [rows, n], probs float32 [rows, n]), each row
    in descending probability, equal probabilities by ascending token id. One pass of
    float32 work per logit (max, exp, partition); the normalizer summed in float64."""
    x = np.asarray(logits, dtype=np.float32)
    rows, vocab = x.shape
    m = x.max(axis=1, keepdims=True)
    lse = m.astype(np.float64) + np.log(np.exp(x - m).sum(axis=1, dtype=np.float64, keepdims=True))
    if n < vocab:
        part = np.argpartition(x, vocab - n, axis=1)[:, vocab - n:]
        # ties at the cut: argpartition may pick any of the equal values; take the
        # lowest ids among those equal to the n-th largest, as the full sort would
        kth = np.take_along_axis(x, part, 1).min(axis=1)
        if (np.count_nonzero(x >= kth[:, None], axis=1) > n).any():
            part = np.argsort(-x, axis=1, kind="stable")[:, :n]
    else:
        part = np.broadcast_to(np.arange(vocab), (rows, vocab))
    vals = np.take_along_axis(x, part, 1).astype(np.float64)
    order = np.lexsort((part, -vals), axis=1)
    ids = np.take_along_axis(part, order, 1)
    probs = np.exp(np.take_along_axis(vals, order, 1) - lse)
    return ids.astype(np.int32), probs.astype(np.float32)
