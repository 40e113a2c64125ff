"""The decoding side of a loaded model: prompts to tokens, prefill chunks and decode steps
with their routing, candidates, the routers' interventions. Runs go through the slot loop
(slots.py): generate is one slot, replay one slot whose tokens are given.

Routing belongs to the token whose hidden state was routed: prompt tokens get theirs
from the prefill; a generated token gets its routing when it is fed back in (the
decode that also yields the next token's logits). So every emitted token has been
decoded, the last one included, and a trace never has a token without routing.
"""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np

from ..errors import RunFailed
from ..llama.batch import Batch
from ..llama.interventions import set_experts_per_token, set_mask
from ..llama.lib import llama_cpp
from ..llama.model import LoadedModel
from ..capture.routing import BatchRouting
from ..gguf_info import ModelInfo
from .builder import NotCausalError, NotMoEError, build_model  # noqa: F401 - their home was here
from .candidates import top_candidates
from .masks import parse_mask
from .events import Finished, TokenInfo
from .options import DEFAULT_OUTPUT_BUDGET, FLASH_ATTN, KV_TYPES, EngineOptions  # noqa: F401 - as above
from .sampling import SamplingSettings, SettingsError
from .slots import BusyError, Run, concat_routing, run_alone  # noqa: F401 - BusyError's home was here
from .text import Detokenizer, PromptError, render_chat, validate_messages
from .toolcalls import ChatPrompt, render_prompt


class DecodeError(RunFailed, RuntimeError):
    """llama_decode returned an error status."""


class Engine:
    """A loaded MoE model that decodes: prompts to tokens, prefill and decode steps with
    their routing, the routers' interventions. What builds the model (file checks,
    devices, offload, RPC, the context) is builder.build_model.

        Engine(path, EngineOptions(n_ctx=2048), progress=...)
        Engine(path, n_ctx=2048)           # the same: fields of EngineOptions by name
    """

    def __init__(self, model_path, options: EngineOptions | None = None, *, progress=None, **fields):
        options = options or EngineOptions()
        if fields:
            options = options.replace(**fields)
        self.options = options
        self.model = build_model(model_path, options, progress)
        self.lm: LoadedModel = self.model.lm
        self.info: ModelInfo = self.model.info
        self.capture = self.model.capture
        self.liveness = self.model.liveness
        self.rpc_servers: list[str] = self.model.rpc_servers
        self.placement: list[dict] = self.model.placement
        self.parallel = options.parallel
        self.output_budget = options.output_budget
        # held by the slot scheduler while any run is active (slots.py), and by set_interventions
        self.context_lock = threading.Lock()
        self.experts_per_token: int = self.info.n_expert_used   # what the routers use now (set_interventions)
        self.mask: list[tuple[int, int]] = []
        self._batch = Batch(self.lm.n_batch)
        try:
            pairs = parse_mask(options.mask, self.info.moe_layers, self.info.n_expert)
            k = options.experts_per_token
            if (k is not None and k != self.info.n_expert_used) or pairs:
                self.set_interventions(k, pairs)
        except BaseException:
            self.close()
            raise
        # what record.apply_interventions restores for a run that asks for nothing
        self.default_interventions: tuple[int, list[tuple[int, int]]] = (self.experts_per_token, list(self.mask))

    # Prompt ---------------------------------------------------------------------------
    def prompt_tokens(self, prompt: str | list[dict]) -> list[int]:
        """Tokens for a plain-text prompt, or for chat messages via the model's template."""
        lm = self.lm
        if isinstance(prompt, str):
            check_text("the prompt", prompt)
            tokens = lm.tokenize(prompt, add_special=lm.add_bos, parse_special=False)
        else:
            if not self.info.chat_template:
                raise PromptError("this model has no chat template; give a plain-text prompt")
            bos, eos = lm.bos_eos_text()
            if isinstance(prompt, ChatPrompt):     # an API request: tools, tool calls and results too
                text = render_prompt(self.info.chat_template, prompt, bos, eos)
            else:
                text = render_chat(self.info.chat_template, validate_messages(prompt), bos, eos)
            add_bos = lm.add_bos and not (bos and text.startswith(bos))
            check_text("the chat messages", text)
            tokens = lm.tokenize(text, add_special=add_bos, parse_special=True)
        return self.check_tokens(tokens)

    def check_tokens(self, tokens: list[int]) -> list[int]:
        """A prompt's tokens as llama.cpp may decode them: some, in the vocabulary, with
        room in the context for at least one more."""
        lm = self.lm
        if not tokens:
            raise PromptError("the prompt is empty")
        bad = next((t for t in tokens if not 0 <= t < lm.n_vocab), None)
        if bad is not None:
            raise PromptError(f"token id {bad} is outside the vocabulary (0-{lm.n_vocab - 1})")
        if len(tokens) >= lm.n_ctx_seq:
            each = f" ({lm.n_ctx} for {lm.n_seq_max} parallel sequences)" if lm.n_seq_max > 1 else ""
            raise PromptError(f"the prompt is {len(tokens)} tokens, longer than the context ({lm.n_ctx_seq} tokens{each})")
        return tokens

    # Decoding -------------------------------------------------------------------------
    def _decode(self, tokens: list[int], pos0: int, all_outputs: bool, probs: bool, candidates: int = 0,
                seq: int = 0) -> BatchRouting:
        n = len(tokens)
        # the last guard before C: llama_decode asserts on a batch over n_batch
        if not 0 < n <= self.lm.n_batch or pos0 < 0 or pos0 + n > self.lm.n_ctx_seq:
            raise DecodeError(f"refused to decode {n} tokens at position {pos0} "
                              f"(batches of 1-{self.lm.n_batch}, context {self.lm.n_ctx_seq})")
        return self._decode_batch(self._batch.fill(tokens, pos0, all_outputs, seq), n, pos0, probs, candidates)

    def decode_rows(self, tokens: list[int], positions: list[int], seqs: list[int], probs: bool) -> BatchRouting:
        """One token for each of several sequences (ascending, distinct), every row an
        output: a parallel decode step. Rows come back in batch order: llama.cpp's
        per-sequence split keeps one-token sequences in seq_id order."""
        n = len(tokens)
        if not 0 < n <= self.lm.n_batch or any(not 0 <= p < self.lm.n_ctx_seq for p in positions) \
                or any(not 0 <= s < self.lm.n_seq_max for s in seqs) or list(seqs) != sorted(set(seqs)):
            raise DecodeError(f"refused to decode a step of {n} sequences (batches of 1-{self.lm.n_batch}, "
                              f"context {self.lm.n_ctx_seq}, {self.lm.n_seq_max} sequences)")
        b = self._batch.fill_rows(tokens, positions, seqs, [True] * n)
        return self._decode_batch(b, n, positions[0], probs, 0)   # candidates per run: slots.Scheduler

    def _decode_batch(self, b, n: int, pos0: int, probs: bool, candidates: int) -> BatchRouting:
        # (whether the model can still run is asked once per step: slots.Scheduler.step)
        self.capture.begin(probs)
        rc = llama_cpp().llama_decode(self.lm.ctx, b)
        try:
            self.liveness.after_decode()
        except BaseException:
            self.capture.abort()
            raise
        if rc != 0:
            self.capture.abort()
            raise DecodeError(f"llama_decode failed with status {rc} at position {pos0}")
        r = self.capture.finish(n)
        if candidates:   # every row is an output then (decode_prompt)
            self.add_candidates(r, self.logits(n), candidates)
        return r

    def logits(self, n: int) -> np.ndarray:
        """The latest decode's logits, [n output rows, n_vocab] (a view, valid until the next decode)."""
        return np.ctypeslib.as_array(llama_cpp().llama_get_logits(self.lm.ctx), shape=(n, self.lm.n_vocab))

    def add_candidates(self, r: BatchRouting, logits: np.ndarray, n: int) -> None:
        """Each row's top-n next tokens (and their texts) onto r."""
        r.candidate_ids, r.candidate_probs = top_candidates(logits, n)
        r.candidate_texts = {int(t): self.token_piece(int(t)) for t in np.unique(r.candidate_ids)}

    def prompt_infos(self, tokens: list[int]) -> list[TokenInfo]:
        """A prompt's tokens with their text (the detokenizer flushed after the last)."""
        detok = Detokenizer()
        infos = [TokenInfo(t, detok.push(self.lm.piece(t)), True) for t in tokens]
        infos[-1].text += detok.flush()
        return infos

    def token_piece(self, token: int) -> str:
        """A token's own text (its piece, invalid UTF-8 replaced): what candidates show."""
        cache = self.__dict__.setdefault("_pieces", {})
        if token not in cache:
            cache[token] = self.lm.piece(token).decode("utf-8", "replace")
        return cache[token]

    def decode_prompt(self, tokens: list[int], pos0: int, probs: bool, candidates: int = 0,
                      seq: int = 0) -> BatchRouting:
        """One prefill chunk (a span of prefill_spans) of sequence `seq`."""
        return self._decode(tokens, pos0, self.prefill_all_outputs(candidates), probs, candidates, seq)

    def prefill_all_outputs(self, candidates: int = 0) -> bool:
        """Whether every prompt row must be an output (its logits computed)."""
        # the trunk's last layer is the one llama.cpp trims to output rows (MTP blocks after it never run)
        last = self.info.n_layer - len(self.info.nextn_layers) - 1
        return candidates > 0 or (self.capture.needs_all_outputs and last in self.info.moe_layers)

    def prefill_spans(self, n: int, candidates: int = 0) -> list[tuple[int, int]]:
        """How a prompt of n tokens is split into llama_decode calls."""
        # Candidates need every prompt row's logits: all rows outputs, in chunks whose
        # logits fit the output budget (the output head then runs on every prompt row).
        need_all = self.prefill_all_outputs(candidates)
        spans = [(s, min(s + self.lm.n_batch, n)) for s in range(0, n, self.lm.n_batch)]
        if need_all:
            # Every row an output: chunks of at most `cap` rows keep the logits in the budget.
            # They subdivide llama.cpp's ubatches (what native capture decodes) into even pieces
            # of at least 64 rows where the ubatch has them (ggml-cpu's flash attention switches
            # kernels at 64 query rows; hence a cap of at least 128), so each row meets the same
            # kernels under both backends and they agree bit for bit (docs/capture.md, "Exactness").
            cap = max(128, self.output_budget // (4 * self.lm.n_vocab))
            n_ubatch = llama_cpp().llama_n_ubatch(self.lm.ctx)
            ubatches = [(u, min(u + n_ubatch, e)) for s, e in spans for u in range(s, e, n_ubatch)]
            spans = []
            for s, e in ubatches:
                k = -(-(e - s) // cap)
                spans += [(s + i * (e - s) // k, s + (i + 1) * (e - s) // k) for i in range(k)]
        return spans

    def set_interventions(self, experts_per_token: int | None = None, mask=()) -> None:
        """Route with `experts_per_token` experts in every MoE layer (None: the model's
        top-k) and never select the (model layer, expert) pairs in `mask`; () clears.
        Checked here, before llama.cpp sees them."""
        k = self.info.n_expert_used if experts_per_token is None else experts_per_token
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.info.n_expert:
            raise SettingsError(f"experts per token must be an integer from 1 to {self.info.n_expert}, got {k!r}")
        pairs = sorted({(int(layer), int(e)) for layer, e in mask})
        moe = set(self.info.moe_layers)
        for layer, e in pairs:
            if layer not in moe:
                raise SettingsError(f"mask: layer {layer} is not one of this model's MoE layers")
            if not 0 <= e < self.info.n_expert:
                raise SettingsError(f"mask: expert {e} is out of range (0-{self.info.n_expert - 1})")
        fixed = set(self.info.token_routed_layers)   # experts from the token id (DeepSeek-V4 hash layers)
        if fixed and k != self.info.n_expert_used:
            raise SettingsError(f"layers {sorted(fixed)} pick their experts by token id: a top-k override cannot apply")
        if fixed & {p[0] for p in pairs}:
            raise SettingsError(f"mask: layers {sorted(fixed)} pick their experts by token id, not by the router")
        for layer in {p[0] for p in pairs}:
            left = self.info.n_expert - sum(1 for p in pairs if p[0] == layer)
            if left < k:
                raise SettingsError(f"mask: layer {layer} keeps {left} experts, fewer than the {k} each token uses")
        if not self.context_lock.acquire(blocking=False):
            raise BusyError("a generation is running on this model")
        try:
            set_experts_per_token(self.lm.ctx, 0 if k == self.info.n_expert_used else k)
            set_mask(self.lm.ctx, pairs)
            self.capture.set_experts_per_token(k)
            self.experts_per_token, self.mask = k, pairs
        finally:
            self.context_lock.release()

    def replay(self, tokens: list[int], n_prompt: int, *, probs: bool = False, candidates: int = 0) -> BatchRouting:
        """Routing of a fixed token sequence, with no sampling: the first n_prompt tokens
        are prefilled as a prompt is, then each later token is decoded alone, as if it had
        been generated. The same model and settings reproduce a recorded run bit for bit.
        `candidates`: also each position's top-N next tokens (BatchRouting.candidate_*)."""
        if not 1 <= n_prompt <= len(tokens):
            raise PromptError(f"replay needs 1 to {len(tokens)} prompt tokens, got {n_prompt}")
        # a slot whose tokens are given (its checks: vocabulary, context)
        run = Run(list(tokens[:n_prompt]), probs=probs, candidates=candidates, given=list(tokens[n_prompt:]))
        parts = [ev.routing for ev in run_alone(self, run) if not isinstance(ev, Finished)]
        return concat_routing(parts)

    def generate(self, prompt: str | list[dict] | list[int], settings: SamplingSettings | None = None, *,
                 probs: bool = False, cancel: threading.Event | None = None, candidates: int = 0) -> Iterator:
        """Yield PromptRouted, then TokenRouted per generated token, then Finished: one
        slot of its own (slots.run_alone). `settings`: the run's sampling settings, passed
        through as sampling.py made them. `candidates`: each token's routing carries its
        position's top-N next tokens."""
        settings = settings if settings is not None else SamplingSettings()
        tokens = list(prompt) if _is_token_list(prompt) else self.prompt_tokens(prompt)
        yield from run_alone(self, Run(tokens, settings, probs=probs, candidates=candidates, cancel=cancel))

    def postprocess(self, r: BatchRouting) -> BatchRouting:
        # For softmax_weight gating (gpt-oss) llama.cpp's `ffn_moe_probs` are the raw
        # router logits; store the softmax over all experts so probs mean the same
        # thing for every model.
        if r.probs is not None and self.info.gating == "softmax_weight":
            z = r.probs - r.probs.max(axis=-1, keepdims=True)
            e = np.exp(z)
            r.probs = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        return r

    def unusable(self) -> str | None:
        """Why this model cannot run any more, in one line (an rpc-server holding its
        layers went away); None while it can."""
        return self.liveness.unusable()

    def placement_text(self) -> str:
        """Which layers run where: "layers 0-3 on 127.0.0.1:50052; ..." ("" when unknown)."""
        return self.model.placement_text()

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._batch.close()
            self._batch = None
        if getattr(self, "model", None) is not None:
            self.model.close()


def check_text(what: str, text: str) -> None:
    """Text llama.cpp's tokenizer can take: UTF-8-encodable (no lone surrogate: Python
    keeps undecodable command-line bytes and JSON's "\\ud800" escapes as those)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PromptError(f"{what} is not valid Unicode text (a lone surrogate or undecodable byte "
                          f"at character {e.start})") from None


def _is_token_list(p) -> bool:
    return isinstance(p, list) and bool(p) and all(isinstance(t, int) for t in p)
