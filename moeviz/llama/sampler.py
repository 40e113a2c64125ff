"""llama.cpp's sampler chain, owned (freed with close()), built as llama-server builds it.

The order is common/sampling.cpp's (common_sampler_init, default `samplers`): logit
bias, penalties, top-n-sigma, top-k, typical, top-p, min-p, XTC, temperature (dynamic
when dynatemp_range > 0), then the seeded draw (DRY and mirostat are not offered);
greedy at temperature 0 (after the bias and penalties, which still apply). A sampler
whose setting is neutral is left out, as it would change nothing.

A grammar is sampled as common_sampler_sample does: draw from the chain, check the
token against the grammar, and only if it fails apply the grammar to every token and
draw again. moeviz drives that loop itself rather than putting the grammar inside the
chain so that nothing can reach llama.cpp's aborts: a token is accepted by the
grammar only once it is known to fit, and an end-of-generation token never (the run
ends there). Grammar text is checked (grammar.py) before llama.cpp parses it.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..errors import UserError
from ..settings import SettingsError
from .grammar import GrammarError, check_gbnf, last_grammar_error
from .lib import llama_cpp

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])   # struct llama_token_data


class GrammarDeadEnd(UserError):
    """No token of the vocabulary can continue the grammar here."""


class Vocab:
    """What the chain needs of a model: its vocabulary, size and per-sequence context
    (from a llama_context, so the loop that samples needs to pass nothing more)."""

    def __init__(self, vocab, n_vocab: int, n_ctx_seq: int):
        self.vocab, self.n_vocab, self.n_ctx_seq = vocab, n_vocab, n_ctx_seq

    @classmethod
    def of_context(cls, ctx) -> "Vocab":
        lc = llama_cpp()
        vocab = lc.llama_model_get_vocab(lc.llama_get_model(ctx))
        return cls(vocab, lc.llama_vocab_n_tokens(vocab), min(lc.llama_n_ctx(ctx), lc.llama_n_ctx_seq(ctx)))

    def tokenize(self, text: str) -> list[int]:
        """Without special tokens, as llama-server tokenizes a logit_bias text."""
        lc = llama_cpp()
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (lc.llama_token * n_max)()
        n = lc.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, False)
        return list(buf[:max(n, 0)])

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp().llama_vocab_is_eog(self.vocab, token))


class SamplerChain:
    def __init__(self, settings, prompt_tokens=(), vocab: Vocab | None = None):
        """`settings`: a SamplingSettings (validated). `prompt_tokens`: the run's prompt,
        which the penalties look back over (llama-server feeds its slot's prompt to the
        sampler). The chain is built when it first samples, from the context's model,
        or at once when `vocab` is given."""
        self.settings = settings
        self.prompt_tokens = list(prompt_tokens)
        self.chain = None
        self.grammar = None
        self.vocab = None
        if vocab is not None:
            self._build(vocab)

    def _add(self, smpl) -> None:
        llama_cpp().llama_sampler_chain_add(self.chain, smpl)

    def _build(self, vocab: Vocab) -> None:
        lc = llama_cpp()
        s = self.settings
        self.vocab = vocab
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        try:
            self._add_samplers(s, vocab)
        except BaseException:
            self.close()
            raise

    def _add_samplers(self, s, vocab: Vocab) -> None:
        lc = llama_cpp()
        if s.logit_bias:
            self._add_logit_bias(s.logit_bias)
        penalties = (s.repeat_last_n != 0 and (s.repeat_penalty != 1.0 or s.frequency_penalty != 0.0
                                                or s.presence_penalty != 0.0))
        if penalties:
            # llama-server: -1 = the context; more than the context looks at nothing more, and llama.cpp
            # allocates a ring of repeat_last_n tokens: 2^31 of them would be 8 GiB
            last_n = vocab.n_ctx_seq if s.repeat_last_n == -1 else min(s.repeat_last_n, vocab.n_ctx_seq)
            self._add(lc.llama_sampler_init_penalties(vocab.n_vocab, last_n, s.repeat_penalty, s.frequency_penalty,
                                                      s.presence_penalty))
        if s.temperature <= 0.0:
            self._add(lc.llama_sampler_init_greedy())
        else:
            if s.top_n_sigma > 0.0:
                self._add(lc.llama_sampler_init_top_n_sigma(s.top_n_sigma))
            if s.top_k > 0:
                self._add(lc.llama_sampler_init_top_k(s.top_k))
            if s.typical_p < 1.0:
                self._add(lc.llama_sampler_init_typical(s.typical_p, 1))
            if s.top_p < 1.0:
                self._add(lc.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0.0:
                self._add(lc.llama_sampler_init_min_p(s.min_p, 1))
            if s.xtc_probability > 0.0 and s.xtc_threshold <= 0.5:      # llama.cpp: above 0.5 it does nothing
                self._add(lc.llama_sampler_init_xtc(s.xtc_probability, s.xtc_threshold, 1, s.seed))
            if s.dynatemp_range > 0.0:
                self._add(lc.llama_sampler_init_temp_ext(s.temperature, s.dynatemp_range, s.dynatemp_exponent))
            else:
                self._add(lc.llama_sampler_init_temp(s.temperature))
            self._add(lc.llama_sampler_init_dist(s.seed))
        if s.grammar:
            self.grammar = make_grammar_sampler(vocab.vocab, s.grammar)
            self._data = np.zeros(vocab.n_vocab, TOKEN_DATA)
            self._ids = np.arange(vocab.n_vocab, dtype=np.int32)
        if penalties:
            for t in self.prompt_tokens:
                lc.llama_sampler_accept(self.chain, int(t))

    def _add_logit_bias(self, pairs) -> None:
        lc = llama_cpp()
        m = self.vocab
        biases: list[tuple[int, float]] = []
        for key, bias in pairs:
            value = float("-inf") if bias is False else float(bias)
            if isinstance(key, str):   # llama-server: every token of the text (tokenized without specials)
                biases += [(t, value) for t in m.tokenize(key)]
            elif not 0 <= key < m.n_vocab:
                raise _bad_token(key, m.n_vocab)
            else:
                biases.append((key, value))
        arr = (lc.llama_logit_bias * len(biases))(*[lc.llama_logit_bias(t, b) for t, b in biases])
        self._add(lc.llama_sampler_init_logit_bias(m.n_vocab, len(biases), arr))

    # Sampling ------------------------------------------------------------------------
    def sample(self, ctx, row: int = -1) -> int:
        """Sample from batch row `row` of the latest decode (-1: its last output row)
        and accept the token."""
        lc = llama_cpp()
        if self.chain is None:
            self._build(Vocab.of_context(ctx))
        if self.grammar is None:
            return int(lc.llama_sampler_sample(self.chain, ctx, row))
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, row), shape=(self.vocab.n_vocab,))
        tok = self._draw(logits, grammar_first=False)
        single = np.array([(tok, 1.0, 0.0)], TOKEN_DATA)
        self._apply(self.grammar, single)
        if not np.isfinite(single["logit"][0]):   # llama-server's rejection sampling: draw again, grammar first
            tok = self._draw(logits, grammar_first=True)
        if not self.vocab.is_eog(tok):            # an end token ends the run: never fed to the grammar (it aborts
            lc.llama_sampler_accept(self.grammar, tok)   # on one the grammar does not allow yet)
        lc.llama_sampler_accept(self.chain, tok)
        return tok

    def _draw(self, logits, *, grammar_first: bool) -> int:
        data = self._data
        data["id"] = self._ids
        data["logit"] = logits
        data["p"] = 0.0
        if grammar_first:
            self._apply(self.grammar, data)
            if not np.isfinite(data["logit"]).any():
                raise GrammarDeadEnd("the grammar allows none of this model's tokens here (is every character it "
                                     "needs in the vocabulary?)")
        cur = self._apply(self.chain, data)
        if not 0 <= cur.selected < cur.size:
            raise GrammarDeadEnd("the sampler selected no token")
        return int(cur.data[cur.selected].id)   # through the array as the chain left it (it may sort and cut)

    @staticmethod
    def _apply(smpl, data: np.ndarray):
        lc = llama_cpp()
        cur = lc.llama_token_data_array(data.ctypes.data_as(lc.llama_token_data_p), len(data), -1, False)
        lc.llama_sampler_apply(smpl, ctypes.byref(cur))
        return cur

    def close(self) -> None:
        lc = llama_cpp()
        if self.chain:
            lc.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar:
            lc.llama_sampler_free(self.grammar)
            self.grammar = None


def make_grammar_sampler(vocab, text: str):
    """llama.cpp's grammar sampler for GBNF `text` on a llama_vocab pointer (root rule
    `root`), or GrammarError with the parser's reason. Checked first (check_gbnf)."""
    check_gbnf(text)
    lc = llama_cpp()
    mark = _log_mark()
    smpl = lc.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
    if not smpl:
        raise GrammarError(f"'grammar' is not valid GBNF: {last_grammar_error(mark, text)}", "grammar")
    return smpl


def check_grammar(model, text: str) -> None:
    """GrammarError unless `text` makes a grammar sampler on `model`'s vocabulary (a
    LoadedModel; the sampler is made and freed): a request's grammar is refused before
    its run is queued."""
    llama_cpp().llama_sampler_free(make_grammar_sampler(model.vocab, text))


def check_run_settings(model, settings) -> None:
    """What of a run's (validated) sampling settings only the model can judge: logit_bias
    token ids within its vocabulary, a grammar its parser takes. A one-line UserError
    before the run is queued, rather than when it first samples."""
    for key, _bias in settings.logit_bias:
        if isinstance(key, int) and not 0 <= key < model.n_vocab:
            raise _bad_token(key, model.n_vocab)
    if settings.grammar:
        check_grammar(model, settings.grammar)


def _bad_token(token: int, n_vocab: int) -> SettingsError:
    return SettingsError(f"'logit_bias': token {token} is not in this model's vocabulary (0-{n_vocab - 1})",
                         "logit_bias")


def _log_mark():
    from .log import llama_log   # noqa: PLC0415

    log = llama_log()
    return (log, log.mark()) if log is not None else None
