"""A llama_batch, owned (freed with close()): one sequence's tokens, or one row per
sequence (a parallel decode step)."""
from __future__ import annotations

from .lib import llama_cpp


class Batch:
    def __init__(self, n_max: int):
        self.n_max = n_max
        self.b = llama_cpp().llama_batch_init(n_max, 0, 1)

    def fill(self, tokens: list[int], pos0: int, all_outputs: bool, seq: int = 0):
        """Tokens at positions pos0.. of sequence `seq`; outputs for every row or only the last."""
        n = len(tokens)
        return self.fill_rows(tokens, range(pos0, pos0 + n), [seq] * n, [all_outputs or i == n - 1 for i in range(n)])

    def fill_rows(self, tokens, positions, seqs, outputs):
        """One row per token: its position, its sequence, whether its logits are wanted."""
        b, n = self.b, len(tokens)
        if n > self.n_max:
            raise ValueError(f"{n} tokens do not fit a batch of {self.n_max}")
        for i, (tok, pos, seq, out) in enumerate(zip(tokens, positions, seqs, outputs)):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = out
        b.n_tokens = n
        return b

    def close(self) -> None:
        if self.b is not None:
            llama_cpp().llama_batch_free(self.b)
            self.b = None
