"""An independent numpy forward pass of llama.cpp's `llama` MoE architecture (Mixtral-style).

Written from the architecture's definition, reading the fixture's weights from the
GGUF with the `gguf` package: RMSNorm, RoPE (llama.cpp "normal" mode: rotate
adjacent pairs), grouped-query causal attention, softmax router, top-k experts with
weights renormalized to sum to 1, SwiGLU experts. Nothing from moeviz or llama.cpp
is used, so agreement is evidence that the captured routing is the real one.
"""
from __future__ import annotations

import numpy as np


def load_weights(path) -> tuple[dict, dict[str, np.ndarray]]:
    import gguf

    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()

    def kv(key):
        return r.fields[f"{arch}.{key}"].contents()

    hp = {"n_layer": kv("block_count"), "n_head": kv("attention.head_count"), "n_head_kv": kv("attention.head_count_kv"),
          "eps": kv("attention.layer_norm_rms_epsilon"), "rope_base": kv("rope.freq_base"),
          "n_expert": kv("expert_count"), "k": kv("expert_used_count")}
    w = {}
    for t in r.tensors:
        # GGUFReader gives numpy arrays in numpy order (outermost first), as written.
        w[t.name] = np.array(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])
    return hp, w


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_normal(x, positions, base):
    """x: [T, heads, d]; llama.cpp NORM mode rotates pairs (2i, 2i+1)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = positions[:, None] * inv[None, :]          # [T, d/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def forward(path, tokens: list[int], k: int | None = None, mask=()):
    """Return (router_probs [T, L, E], topk_ids [T, L, k], topk_weights [T, L, k], logits [T, V]).

    k: experts per token instead of the model's; mask: (layer, expert) pairs never selected
    (the best unmasked experts are, their weights renormalized among themselves)."""
    hp, w = load_weights(path)
    if k is not None:
        hp["k"] = k
    T = len(tokens)
    x = w["token_embd.weight"][tokens]                        # [T, n_embd]
    pos = np.arange(T, dtype=np.float64)
    nh, nkv = hp["n_head"], hp["n_head_kv"]
    all_probs, all_ids, all_w = [], [], []
    for il in range(hp["n_layer"]):
        p = f"blk.{il}."
        h = rms_norm(x, w[p + "attn_norm.weight"], hp["eps"])
        q = (h @ w[p + "attn_q.weight"].T).reshape(T, nh, -1)
        k = (h @ w[p + "attn_k.weight"].T).reshape(T, nkv, -1)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, nkv, -1)
        d = q.shape[-1]
        q, k = rope_normal(q, pos, hp["rope_base"]), rope_normal(k, pos, hp["rope_base"])
        rep = nh // nkv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(d)
        scores = scores + np.triu(np.full((T, T), -np.inf), 1)[None]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        att = scores / scores.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, nh * d)
        x = x + o @ w[p + "attn_output.weight"].T

        h = rms_norm(x, w[p + "ffn_norm.weight"], hp["eps"])
        logits = h @ w[p + "ffn_gate_inp.weight"].T               # [T, E]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        scores = probs.copy()
        scores[:, [e for layer, e in mask if layer == il]] = -np.inf
        ids = np.argsort(-scores, axis=-1, kind="stable")[:, :hp["k"]]
        gw = np.take_along_axis(probs, ids, -1)
        gw = gw / gw.sum(-1, keepdims=True)
        y = np.zeros_like(x)
        for t in range(T):
            for e, g in zip(ids[t], gw[t]):
                gate = w[p + "ffn_gate_exps.weight"][e] @ h[t]
                up = w[p + "ffn_up_exps.weight"][e] @ h[t]
                y[t] += g * (w[p + "ffn_down_exps.weight"][e] @ (gate / (1 + np.exp(-gate)) * up))
        x = x + y
        all_probs.append(probs)
        all_ids.append(ids)
        all_w.append(gw)
    h = rms_norm(x, w["output_norm.weight"], hp["eps"])
    out = h @ w["output.weight"].T
    return np.stack(all_probs, 1), np.stack(all_ids, 1), np.stack(all_w, 1), out
