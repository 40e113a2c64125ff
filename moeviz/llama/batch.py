"""A llama_batch for one sequence, owned (freed with close())."""
from __future__ import annotations

from .lib import llama_cpp


class Batch:
    def __init__(self, n_max: int):
        self.n_max = n_max
        self.b = llama_cpp().llama_batch_init(n_max, 0, 1)

    def fill(self, tokens: list[int], pos0: int, all_outputs: bool):
        """Tokens at positions pos0.., sequence 0; outputs for every row or only the last."""
        b, n = self.b, len(tokens)
        if n > self.n_max:
            raise ValueError(f"{n} tokens do not fit a batch of {self.n_max}")
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = all_outputs or i == n - 1
        b.n_tokens = n
        return b

    def close(self) -> None:
        if self.b is not None:
            llama_cpp().llama_batch_free(self.b)
            self.b = None
