"""The demo model's shape, and writing it as a llama.cpp `llama` (Mixtral-style MoE) GGUF.

Conventions are those of `moeviz.fixtures.models._llama`: ggml's {n_embd, n_ff,
n_expert} is written as a numpy array of shape (n_expert, n_ff, n_embd); RMSNorm eps
and RoPE base are stored in the file; GPT-2 style BPE tokenizer with ChatML specials.
No PyTorch here: tensors are numpy arrays.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import gguf
import numpy as np

from ..gguf_write import write_bpe_gguf
from .tokenizer import SPECIAL_TOKENS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    n_vocab: int = 4096
    n_embd: int = 128
    n_layer: int = 6
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 32           # per expert
    n_expert: int = 64
    n_expert_used: int = 4
    n_ctx_train: int = 512   # the longest sequence trained on (written as the context length)
    rms_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor names -> numpy shapes (outermost first)."""
        d, hd, E, F = self.n_embd, self.head_dim, self.n_expert, self.n_ff
        s = {"token_embd.weight": (self.n_vocab, d), "output_norm.weight": (d,), "output.weight": (self.n_vocab, d)}
        for i in range(self.n_layer):
            p = f"blk.{i}."
            s |= {p + "attn_norm.weight": (d,), p + "attn_q.weight": (self.n_head * hd, d),
                  p + "attn_k.weight": (self.n_head_kv * hd, d), p + "attn_v.weight": (self.n_head_kv * hd, d),
                  p + "attn_output.weight": (d, self.n_head * hd), p + "ffn_norm.weight": (d,),
                  p + "ffn_gate_inp.weight": (E, d), p + "ffn_gate_exps.weight": (E, F, d),
                  p + "ffn_up_exps.weight": (E, F, d), p + "ffn_down_exps.weight": (E, d, F)}
        return s

    def n_params(self) -> tuple[int, int]:
        """(total, active per token). Active counts k of the experts; the embedding lookup
        counts (it is a parameter the token uses) as in the usual MoE reporting."""
        total = sum(int(np.prod(s)) for s in self.shapes().values())
        per_expert = 3 * self.n_embd * self.n_ff
        active = total - self.n_layer * (self.n_expert - self.n_expert_used) * per_expert
        return total, active


# token_embd is only ever looked up (ggml_get_rows converts rows to f32 exactly), so f16
# storage costs no accuracy against a reference that reads the same f16 values; every
# tensor used in a matrix product stays f32 so llama.cpp's arithmetic stays float32.
F16_TENSORS = {"token_embd.weight"}


def write_gguf(path: str | os.PathLike, cfg: ModelConfig, tokens: list[str], merges: list[str],
               tensors: dict[str, np.ndarray], *, name: str = "moeviz-demo-moe", description: str | None = None,
               extra: dict[str, str] | None = None) -> Path:
    """Write atomically. `tokens` are the normal tokens (SPECIAL_TOKENS are appended)."""
    path = Path(path)
    all_tokens = list(tokens) + SPECIAL_TOKENS
    if len(all_tokens) != cfg.n_vocab:
        raise ValueError(f"tokenizer has {len(all_tokens)} tokens, the model {cfg.n_vocab}")
    shapes = cfg.shapes()
    if tensors and set(tensors) != set(shapes):
        raise ValueError(f"tensor names differ from the model's: {sorted(set(tensors) ^ set(shapes))[:5]}")

    def kv(w: gguf.GGUFWriter) -> None:
        if description:
            w.add_description(description)
        for k, v in (extra or {}).items():
            w.add_string(k, v)
        w.add_context_length(cfg.n_ctx_train)
        w.add_embedding_length(cfg.n_embd)
        w.add_block_count(cfg.n_layer)
        w.add_head_count(cfg.n_head)
        w.add_head_count_kv(cfg.n_head_kv)
        w.add_layer_norm_rms_eps(cfg.rms_eps)
        w.add_rope_freq_base(cfg.rope_base)
        w.add_expert_count(cfg.n_expert)
        w.add_expert_used_count(cfg.n_expert_used)
        w.add_vocab_size(cfg.n_vocab)
        w.add_feed_forward_length(cfg.n_ff)
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_file_type(gguf.LlamaFileType.ALL_F32)

    def arrays():
        for tname in shapes:  # the loader's order: embeddings, then layer by layer
            if tname not in tensors:
                continue
            arr = np.ascontiguousarray(tensors[tname])
            if arr.shape != shapes[tname]:
                raise ValueError(f"{tname}: shape {arr.shape}, expected {shapes[tname]}")
            yield tname, arr.astype(np.float16 if tname in F16_TENSORS else np.float32)

    return write_bpe_gguf(path, "llama", name, all_tokens, merges, arrays(), kv)


def read_tokenizer(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(normal tokens, merges) of a GGUF written by write_gguf."""
    r = gguf.GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    return list(tokens[: len(tokens) - len(SPECIAL_TOKENS)]), list(merges)
