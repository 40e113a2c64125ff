"""The demo model in PyTorch, written to be exactly llama.cpp's `llama` MoE graph.

Pre-norm decoder: RMSNorm (eps from the config) -> grouped-query causal attention with
llama.cpp's "normal" RoPE (rotates adjacent pairs (2i, 2i+1)) -> residual -> RMSNorm ->
softmax router, top-k experts with their weights renormalized to sum 1 (Mixtral),
SwiGLU experts -> residual; final RMSNorm and an untied output matrix. Parameters are
stored in GGUF layout (numpy order), so export is a plain copy.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .export import ModelConfig


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(cfg: ModelConfig, T: int, device=None):
    d = cfg.head_dim
    inv = cfg.rope_base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]      # [T, d/2]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def rope(x, cos, sin):
    """x: [B, H, T, d]; rotate pairs (2i, 2i+1) like llama.cpp's LLAMA_ROPE_TYPE_NORM."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class MoEModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.params = nn.ParameterDict()
        for name, shape in cfg.shapes().items():
            self.params[name.replace(".", "__")] = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def p(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def named_gguf(self):
        for key, t in self.params.items():
            yield key.replace("__", "."), t

    @torch.no_grad()
    def reset_parameters(self):
        cfg = self.cfg
        for name, t in self.named_gguf():
            if name.endswith("norm.weight"):
                t.fill_(1.0)
            elif name == "token_embd.weight":
                t.normal_(0.0, 1.0)  # RMSNorm'd before use: only direction matters
            elif name.endswith(("attn_output.weight", "ffn_down_exps.weight")):
                t.normal_(0.0, 1.0 / math.sqrt(t.shape[-1]) / math.sqrt(2 * cfg.n_layer))
            else:
                t.normal_(0.0, 1.0 / math.sqrt(t.shape[-1]))

    def forward(self, tokens: torch.Tensor, return_routing: bool = False):
        """tokens [B, T] -> (logits [B, T, V], aux_loss, routing or None).

        aux_loss is the Switch/Mixtral load-balancing loss averaged over layers:
        E * sum_e f_e * P_e (f_e: share of the top-k slots given to e, P_e: mean router
        probability of e); 1.0 when perfectly balanced.
        """
        cfg = self.cfg
        B, T = tokens.shape
        H, Hkv, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        cos, sin = rope_tables(cfg, T, tokens.device)
        x = self.p("token_embd.weight")[tokens]
        aux = x.new_zeros(())
        routing = []
        for il in range(cfg.n_layer):
            pre = f"blk.{il}."
            h = rms_norm(x, self.p(pre + "attn_norm.weight"), cfg.rms_eps)
            q = (h @ self.p(pre + "attn_q.weight").T).view(B, T, H, hd).transpose(1, 2)
            k = (h @ self.p(pre + "attn_k.weight").T).view(B, T, Hkv, hd).transpose(1, 2)
            v = (h @ self.p(pre + "attn_v.weight").T).view(B, T, Hkv, hd).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            # query head h uses KV head h // (H / Hkv), as llama.cpp (and np.repeat) do
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + o.transpose(1, 2).reshape(B, T, H * hd) @ self.p(pre + "attn_output.weight").T

            h = rms_norm(x, self.p(pre + "ffn_norm.weight"), cfg.rms_eps).reshape(B * T, -1)
            y, layer_aux, r = self.moe(pre, h)
            aux = aux + layer_aux
            if return_routing:
                routing.append(r)
            x = x + y.view(B, T, -1)
        h = rms_norm(x, self.p("output_norm.weight"), cfg.rms_eps)
        logits = h @ self.p("output.weight").T
        return logits, aux / cfg.n_layer, routing if return_routing else None

    def moe(self, pre: str, h: torch.Tensor):
        cfg = self.cfg
        N, E, K = h.shape[0], cfg.n_expert, cfg.n_expert_used
        probs = torch.softmax(h @ self.p(pre + "ffn_gate_inp.weight").T, dim=-1)    # [N, E]
        top_p, top_i = probs.topk(K, dim=-1)
        top_w = top_p / top_p.sum(-1, keepdim=True)
        flat_e = top_i.reshape(-1)
        order = torch.argsort(flat_e, stable=True)
        tok = order // K
        counts = torch.bincount(flat_e, minlength=E)
        xs = h[tok]
        wg, wu, wd = (self.p(pre + n) for n in ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"))
        # All experts in three batched products: expert e's tokens fill row e of a
        # [E, C, n_embd] buffer (C: the busiest expert's count; the rest is zero padding).
        # Same values as one product per expert, and far fewer, larger operations (a loop
        # over 64 experts spends its time in per-expert overhead and gradient slices).
        es = flat_e[order]
        pos = torch.arange(es.numel(), device=h.device) - (torch.cumsum(counts, 0) - counts)[es]
        buf = h.new_zeros(E, int(counts.max()), h.shape[1]).index_put((es, pos), xs)
        act = F.silu(torch.bmm(buf, wg.transpose(1, 2))) * torch.bmm(buf, wu.transpose(1, 2))
        out = torch.bmm(act, wd.transpose(1, 2))[es, pos] * top_w.reshape(-1)[order, None]
        y = torch.zeros_like(h).index_add_(0, tok, out)
        f = counts.to(h.dtype) / (N * K)
        aux = E * (f * probs.mean(0)).sum()
        return y, aux, (probs.detach(), top_i.detach())
