"""Byte-level BPE for the demo model: a fast trainer, and llama.cpp itself as the encoder.

The trainer produces what `moeviz.fixtures.bpe.train_bpe` produces (256 byte tokens in
GPT-2's byte-to-unicode alphabet, then one token per merge, merges as "a b" strings),
but keeps pair counts incrementally, so thousands of merges over megabytes of text take
about a minute instead of hours.

Training text is tokenized by llama.cpp from a tokenizer-only GGUF: the ids the model
learns from are exactly the ids `moeviz serve` feeds it, whatever differences remain
between this module's pre-tokenizer (stdlib `re`) and llama.cpp's ("gpt-2").
"""
from __future__ import annotations

import collections
import ctypes
import heapq
import os
import re
import tempfile
from pathlib import Path

from ..bpe import bytes_to_unicode
from ..gguf_write import SPECIAL_TOKENS

EOT = SPECIAL_TOKENS[0]

# llama.cpp's "gpt-2" pre-tokenizer, 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+,
# with the stdlib `re` (letters = [^\W\d_]; "_" is punctuation there, as in \p{P}).
PRETOKEN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def train_bpe_fast(texts, vocab_size: int) -> tuple[list[str], list[str]]:
    """(tokens, merges) with len(tokens) + len(SPECIAL_TOKENS) == vocab_size (if the text allows).

    Most frequent pair first; ties broken by the pair's strings, so the result depends
    only on the text.
    """
    b2u = bytes_to_unicode()
    counter: collections.Counter = collections.Counter()
    for t in texts:
        counter.update(PRETOKEN.findall(t))
    sym = [b2u[b] for b in range(256)]
    sym_id = {s: i for i, s in enumerate(sym)}
    words = [[sym_id[b2u[b]] for b in w.encode("utf-8")] for w in counter]
    counts = list(counter.values())

    pair_counts: dict[tuple[int, int], int] = collections.defaultdict(int)
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for wi, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            pair_counts[p] += c
            where[p].add(wi)
    heap = [(-c, sym[a], sym[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    n_target = vocab_size - len(SPECIAL_TOKENS)
    tokens, merges = list(sym), []
    while len(tokens) < n_target and heap:
        negc, _, _, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -negc:
            continue  # stale entry: the count changed since it was pushed
        if -negc < 2:
            break
        s = sym[a] + sym[b]
        merges.append(f"{sym[a]} {sym[b]}")
        if s in sym_id:  # two merge paths can build the same string
            new = sym_id[s]
        else:
            new = sym_id[s] = len(sym)
            sym.append(s)
            tokens.append(s)
        touched = set()
        for wi in sorted(where.pop((a, b), ())):
            w, c = words[wi], counts[wi]
            for p in zip(w, w[1:]):
                pair_counts[p] -= c
                touched.add(p)
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_counts[p] += c
                where[p].add(wi)
                touched.add(p)
        for p in touched:
            c = pair_counts[p]
            if c <= 0:
                pair_counts.pop(p, None)
            else:
                heapq.heappush(heap, (-c, sym[p[0]], sym[p[1]], p[0], p[1]))
    return tokens, merges


class LlamaTokenizer:
    """llama.cpp's tokenizer for a GGUF (loaded vocab-only: no weights read)."""

    def __init__(self, gguf_path: str | os.PathLike):
        from ..llama.lib import llama_cpp  # noqa: PLC0415
        from ..llama.log import llama_log  # noqa: PLC0415

        llama_log()
        self.lc = lc = llama_cpp()
        lc.llama_backend_init()
        mp = lc.llama_model_default_params()
        mp.vocab_only = True
        self.model = lc.llama_model_load_from_file(os.fsencode(str(gguf_path)), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load the tokenizer of {gguf_path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self._buf = (lc.llama_token * 1)()
        self._piece = ctypes.create_string_buffer(256)

    def encode(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 16
        if len(self._buf) < n_max:
            self._buf = (self.lc.llama_token * n_max)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), self._buf, len(self._buf), False, False)
        if n < 0:
            raise RuntimeError(f"llama_tokenize failed ({n})")
        return list(self._buf[:n])

    def piece(self, token: int) -> bytes:
        n = self.lc.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, True)
        return self._piece.raw[:n]

    def decode(self, tokens) -> str:
        return b"".join(self.piece(int(t)) for t in tokens).decode("utf-8", "replace")

    def close(self) -> None:
        if self.model:
            self.lc.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tokenizer_only_gguf(cfg, tokens: list[str], merges: list[str], directory: str | os.PathLike | None = None) -> Path:
    """Write a GGUF with the hyperparameters and tokenizer but no tensors (for LlamaTokenizer)."""
    from .export import write_gguf  # noqa: PLC0415

    fd, tmp = tempfile.mkstemp(suffix=".gguf", prefix="moeviz-tok-", dir=directory)
    os.close(fd)
    write_gguf(tmp, cfg, tokens, merges, {}, name="moeviz-demo-tokenizer")
    return Path(tmp)
