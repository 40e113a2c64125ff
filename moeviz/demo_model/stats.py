"""Numbers reported about the demo model (numpy only; shared by training and tests)."""
from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def perplexity(logits: np.ndarray, tokens) -> float:
    """Perplexity of tokens[1:] under logits[:-1] (logits [T, V] of one sequence)."""
    tokens = np.asarray(tokens)
    lp = log_softmax(np.asarray(logits, dtype=np.float64))[np.arange(len(tokens) - 1), tokens[1:]]
    return float(np.exp(-lp.mean()))


def unigram_logprobs(train_tokens: np.ndarray, n_vocab: int) -> np.ndarray:
    """Add-one smoothed unigram model fitted on training tokens."""
    counts = np.bincount(train_tokens, minlength=n_vocab).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def unigram_perplexity(logp: np.ndarray, tokens) -> float:
    return float(np.exp(-logp[np.asarray(tokens)].mean()))


def oracle_unigram_perplexity(tokens) -> float:
    """exp(entropy) of the tokens' own frequencies: no unigram model does better on them."""
    _, c = np.unique(np.asarray(tokens), return_counts=True)
    p = c / c.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def expert_histograms(ids: np.ndarray, n_expert: int) -> np.ndarray:
    """ids [T, L, k] of selected experts -> [L, E] share of each layer's top-k slots."""
    T, L, k = ids.shape
    h = np.zeros((L, n_expert))
    for li in range(L):
        h[li] = np.bincount(ids[:, li].ravel(), minlength=n_expert)
    return h / h.sum(-1, keepdims=True)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row total variation distance 0.5 * sum |p - q| (0: same, 1: disjoint)."""
    return 0.5 * np.abs(p - q).sum(-1)


def code_prose_divergence(code_ids: np.ndarray, prose_ids: np.ndarray, n_expert: int) -> np.ndarray:
    """Per-layer total variation between the expert distributions of code and prose tokens."""
    return total_variation(expert_histograms(code_ids, n_expert), expert_histograms(prose_ids, n_expert))


def load_balance(ids: np.ndarray, n_expert: int) -> dict:
    """Per-layer load: min/max share of the top-k slots and normalized entropy (1 = uniform)."""
    h = expert_histograms(ids, n_expert)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(h > 0, h * np.log(h), 0.0).sum(-1) / np.log(n_expert)
    return {"min_share": h.min(-1).round(4).tolist(), "max_share": h.max(-1).round(4).tolist(),
            "entropy": ent.round(4).tolist()}


def kind_separation(ids: list[np.ndarray], kinds: list[str], n_expert: int) -> dict:
    """How much routing depends on the kind of text, beyond how much it varies between texts.

    Per layer and for every pair of samples, the total variation distance between their
    expert histograms: `between` averages the pairs of different kinds (code vs prose),
    `within` the pairs of the same kind, and `separation` = between - within (arrays
    over layers). A random router also sends different texts to different experts
    (different tokens, a different drift of the residual stream): that shows as
    `within`. A model that learned what code and prose are separates the kinds by more.
    """
    h = [expert_histograms(i, n_expert) for i in ids]
    between, within = [], []
    for i in range(len(h)):
        for j in range(i + 1, len(h)):
            (between if kinds[i] != kinds[j] else within).append(total_variation(h[i], h[j]))
    b, w = np.mean(between, axis=0), np.mean(within, axis=0)
    return {"between": b, "within": w, "separation": b - w}
