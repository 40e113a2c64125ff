"""The generation loop: prefill, sample, decode one token at a time, routing per token.

Routing belongs to the token whose hidden state was routed: prompt tokens get theirs
from the prefill; a generated token gets its routing when it is fed back in (the
decode that also yields the next token's logits). So every emitted token has been
decoded, the last one included, and a trace never has a token without routing.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

import numpy as np

from ..errors import Busy, RunFailed, UserError
from ..llama.batch import Batch
from ..llama.interventions import set_experts_per_token, set_mask
from ..llama.lib import llama_cpp
from ..llama.offload import TensorOverrides, expert_patterns
from ..llama import rpc as rpc_backend
from ..llama.log import llama_log
from ..capture.routing import BatchRouting
from ..gguf_info import ModelFileError, ModelInfo
from ..capture.factory import make_capture
from .candidates import check_candidates, top_candidates
from .masks import parse_mask
from .events import Finished, PromptRouted, TokenInfo, TokenRouted
from ..llama.model import LoadedModel, ModelLoadError
from .sampling import SamplingSettings, SettingsError
from .text import Detokenizer, PromptError, StopStrings, render_chat, validate_messages


class NotMoEError(UserError, ValueError):
    """The model has no routed experts: nothing to record."""


class NotCausalError(UserError, ValueError):
    """The model is not decoded left to right (a diffusion model): moeviz records generation."""


class DecodeError(RunFailed, RuntimeError):
    """llama_decode returned an error status."""


class BusyError(Busy, RuntimeError):
    """A generation is already running on this engine."""


# Host memory allowed for the logits of one prefill chunk when every prompt row must
# be an output (callback capture: llama.cpp runs the last layer only for output rows).
# With a 150k vocabulary that is ~100 rows per chunk instead of a 1 GB buffer.
DEFAULT_OUTPUT_BUDGET = 64 << 20
KV_TYPES = {"f16": 1, "f32": 0}  # ggml types for the KV cache (f16 is llama.cpp's default)
# Flash attention on the CPU rounds Q to f16: with it off and an f32 KV cache, routing
# matches a float64 reference to ~1e-7 instead of ~1e-3 (tests use that for exactness).
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


class Engine:
    def __init__(self, model_path, *, n_ctx: int = 4096, n_batch: int = 512, n_threads: int | None = None,
                 n_gpu_layers: int = 0, capture: str = "auto", output_budget: int = DEFAULT_OUTPUT_BUDGET,
                 kv_type: str = "f16", flash_attn: str = "auto", cpu_moe: bool = False, n_cpu_moe: int = 0,
                 n_ubatch: int | None = None, progress=None, experts_per_token: int | None = None, mask=None,
                 rpc=None, tensor_split=None, parallel: int = 1):
        # progress: called with the loaded fraction of the model (0.0 .. 1.0), see LoadedModel
        # experts_per_token / mask: this engine's routing unless a run asks otherwise
        # (set_interventions; `mask` in any form masks.parse_mask reads: "3:5,*:0", pairs)
        # rpc: llama.cpp rpc-servers ("host:port,..." or a list) that take the layers
        # --n-gpu-layers offloads, split by tensor_split (proportions per server; default:
        # by their free memory), as llama.cpp's --rpc (moeviz/llama/rpc.py)
        # parallel: sequences decoded together (engine/batched.py, serve --parallel); as in
        # llama.cpp's server each gets n_ctx / parallel cells of the context
        from ..gguf_info import read_model_info  # noqa: PLC0415

        info = read_model_info(model_path)
        if not info.is_moe:
            raise NotMoEError(f"{model_path} is a dense model ({info.architecture}, no routed experts): nothing to record")
        # refused before llama.cpp sees the file: it would abort the process on these
        if info.load_error:
            raise ModelFileError(f"{model_path}: {info.load_error}")
        if info.n_expert_used_per_layer:
            raise NotMoEError(f"{model_path} uses a different top-k per layer ({sorted(set(info.n_expert_used_per_layer))}): "
                              "moeviz traces have one top-k for all MoE layers")
        if not info.causal:
            raise NotCausalError(f"{info.architecture} is a {info.decoding} model, not decoded left to right: moeviz "
                                 "records token-by-token generation")
        self.capture = make_capture(capture, info)
        if kv_type not in KV_TYPES:
            raise SettingsError(f"unknown KV cache type {kv_type!r}; choose one of {', '.join(KV_TYPES)}")
        if flash_attn not in FLASH_ATTN:
            raise SettingsError(f"unknown flash attention setting {flash_attn!r}; choose one of {', '.join(FLASH_ATTN)}")

        def configure_context(cp):
            cp.type_k = cp.type_v = KV_TYPES[kv_type]
            cp.flash_attn_type = FLASH_ATTN[flash_attn]
            self.capture.configure_context(cp)

        # Expert tensors in host memory (--cpu-moe / --n-cpu-moe), as llama.cpp does it.
        if n_cpu_moe < 0:
            raise SettingsError(f"--n-cpu-moe must be zero or more, got {n_cpu_moe}")
        self.offload = TensorOverrides(expert_patterns(cpu_moe, n_cpu_moe))
        self.rpc_servers: list[str] = rpc_backend.parse_servers(rpc) if rpc else []
        split = rpc_backend.parse_tensor_split(tensor_split)
        self._rpc_lost = None
        devices = None
        if self.rpc_servers:
            # probed, then registered with ggml (it aborts on an unreachable server)
            devices = rpc_backend.DeviceList(rpc_backend.add_servers(self.rpc_servers), split)
        elif split or rpc_backend.registered():
            # another engine in this process registered RPC servers: llama.cpp's default
            # device list would take them too; this one keeps to the local GPUs
            devices = rpc_backend.DeviceList(rpc_backend.local_gpu_devices(), split)

        def configure_model(mp):
            self.offload.apply(mp)
            if devices is not None:
                devices.apply(mp)

        # what each server offers (moeviz rpc-server --mem), to name it if a buffer does not fit
        offered = rpc_backend.offered_memory(devices.devices) if self.rpc_servers else {}
        mark = llama_log().mark()
        try:
            self.lm = LoadedModel(model_path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                  n_gpu_layers=n_gpu_layers, configure_model=configure_model,
                                  configure_context=configure_context, info=info, n_ubatch=n_ubatch,
                                  progress=progress, n_seq_max=parallel)
        except ModelLoadError as e:
            line = rpc_backend.allocation_failure([t for _, t in llama_log().since(mark)], offered) \
                if self.rpc_servers else None
            if line is None:
                raise
            raise ModelLoadError(line) from e
        # which layers went where (llama.cpp's load log); layer n_layer is the output head
        names = {}
        if devices is not None:
            names = {rpc_backend.device_name(d): rpc_backend.device_description(d) for d in devices.devices}
        placed = rpc_backend.placement_from_log([line for _, line in llama_log().since(mark)])
        self.placement: list[dict] = rpc_backend.summarize(placed, info.n_layer, names)
        if lc_diffusion(self.lm.model):
            self.lm.close()
            raise NotCausalError(f"{info.architecture} is a diffusion model, not decoded left to right: moeviz records "
                                 "token-by-token generation (llama.cpp runs it with llama-diffusion-cli)")
        if parallel > self.lm.n_batch:
            self.lm.close()
            raise SettingsError(f"--parallel {parallel} needs batches of {parallel} tokens; this context's are "
                                f"{self.lm.n_batch} (raise --n-ctx)")
        self.parallel = parallel
        self.capture.attach(self.lm.ctx)
        self.info: ModelInfo = self.lm.info
        self.output_budget = output_budget
        self._lock = threading.Lock()
        self.experts_per_token: int = info.n_expert_used   # what the routers use now (set_interventions)
        self.mask: list[tuple[int, int]] = []
        self._batch = Batch(self.lm.n_batch)
        pairs = parse_mask(mask, info.moe_layers, info.n_expert)
        if (experts_per_token is not None and experts_per_token != info.n_expert_used) or pairs:
            try:
                self.set_interventions(experts_per_token, pairs)
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
            messages = validate_messages(prompt)
            if not self.info.chat_template:
                raise PromptError("this model has no chat template; give a plain-text prompt")
            bos, eos = lm.bos_eos_text()
            text = render_chat(self.info.chat_template, messages, bos, eos)
            add_bos = lm.add_bos and not (bos and text.startswith(bos))
            check_text("the chat messages", text)
            tokens = lm.tokenize(text, add_special=add_bos, parse_special=True)
        return self._check_tokens(tokens)

    def _check_tokens(self, tokens: list[int]) -> list[int]:
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

    def _decode_rows(self, tokens: list[int], positions: list[int], seqs: list[int], probs: bool) -> BatchRouting:
        """One token for each of several sequences (ascending, distinct), every row an
        output: a parallel decode step. Rows come back in batch order: llama.cpp's
        per-sequence split keeps one-token sequences in seq_id order."""
        n = len(tokens)
        if not 0 < n <= self.lm.n_batch or any(not 0 <= p < self.lm.n_ctx_seq for p in positions) \
                or any(not 0 <= s < self.lm.n_seq_max for s in seqs) or list(seqs) != sorted(set(seqs)):
            raise DecodeError(f"refused to decode a step of {n} sequences (batches of 1-{self.lm.n_batch}, "
                              f"context {self.lm.n_ctx_seq}, {self.lm.n_seq_max} sequences)")
        b = self._batch.fill_rows(tokens, positions, seqs, [True] * n)
        return self._decode_batch(b, n, positions[0], probs, 0)   # candidates per run: BatchedGeneration

    def _decode_batch(self, b, n: int, pos0: int, probs: bool, candidates: int) -> BatchRouting:
        if self.rpc_servers:
            self.check_rpc()
        self.capture.begin(probs)
        rc = llama_cpp().llama_decode(self.lm.ctx, b)
        if self.rpc_servers and rpc_backend.lost_servers(self.rpc_servers):
            # a server went away inside this decode: ggml-rpc (patched) failed the graph
            # (rc -3) or read zeros from it; either way these results are not the model's
            self.capture.abort()
            self.check_rpc()   # raises RpcServerLost naming the server
        if rc != 0:
            self.capture.abort()
            raise DecodeError(f"llama_decode failed with status {rc} at position {pos0}")
        r = self.capture.finish(n)
        if candidates:   # every row is an output then (_prefill, the decode loop)
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

    def _prefill(self, tokens: list[int], probs: bool, cancel: threading.Event | None,
                 candidates: int = 0, seq: int = 0) -> BatchRouting | None:
        parts = []
        for s, e in self.prefill_spans(len(tokens), candidates):
            if cancel is not None and cancel.is_set():
                return None
            parts.append(self._decode(tokens[s:e], s, self.prefill_all_outputs(candidates), probs, candidates, seq))
        return concat_routing(parts)

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
            # kernels under both backends and they agree bit for bit (README, "Exactness").
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
        if not self._lock.acquire(blocking=False):
            raise BusyError("a generation is running on this model")
        try:
            set_experts_per_token(self.lm.ctx, 0 if k == self.info.n_expert_used else k)
            set_mask(self.lm.ctx, pairs)
            self.capture.set_experts_per_token(k)
            self.experts_per_token, self.mask = k, pairs
        finally:
            self._lock.release()

    def replay(self, tokens: list[int], n_prompt: int, *, probs: bool = False, candidates: int = 0) -> BatchRouting:
        """Routing of a fixed token sequence, with no sampling: the first n_prompt tokens
        are prefilled as a prompt is, then each later token is decoded alone, as if it had
        been generated. The same model and settings reproduce a recorded run bit for bit.
        `candidates`: also each position's top-N next tokens (BatchRouting.candidate_*)."""
        check_candidates(candidates, self.lm.n_vocab)
        if not 1 <= n_prompt <= len(tokens):
            raise PromptError(f"replay needs 1 to {len(tokens)} prompt tokens, got {n_prompt}")
        if len(tokens) > self.lm.n_ctx_seq:
            raise PromptError(f"{len(tokens)} tokens do not fit the context ({self.lm.n_ctx_seq} tokens)")
        bad = [t for t in tokens if not 0 <= t < self.lm.n_vocab]
        if bad:
            raise PromptError(f"token id {bad[0]} is outside the vocabulary (0-{self.lm.n_vocab - 1})")
        if not self._lock.acquire(blocking=False):
            raise BusyError("a generation is already running on this model")
        try:
            if self.rpc_servers:
                self.check_rpc()   # clearing the KV cache already talks to the servers
            self.lm.clear_memory()
            parts = [self._prefill(list(tokens[:n_prompt]), probs, None, candidates)]
            for pos in range(n_prompt, len(tokens)):
                parts.append(self._decode([tokens[pos]], pos, True, probs, candidates))
            return self._postprocess(concat_routing(parts))
        finally:
            self._lock.release()

    def generate(self, prompt: str | list[dict] | list[int], settings: SamplingSettings | None = None, *,
                 probs: bool = False, cancel: threading.Event | None = None, candidates: int = 0) -> Iterator:
        """Yield PromptRouted, then TokenRouted per generated token, then Finished.
        `candidates`: each token's routing carries its position's top-N next tokens."""
        settings = (settings or SamplingSettings()).validate()
        check_candidates(candidates, self.lm.n_vocab)
        if not self._lock.acquire(blocking=False):
            raise BusyError("a generation is already running on this model")
        try:
            yield from self._generate(prompt, settings, probs, cancel, candidates)
        finally:
            self._lock.release()

    def _generate(self, prompt, settings: SamplingSettings, probs: bool, cancel, candidates: int = 0):
        lm = self.lm
        tokens = self._check_tokens(list(prompt)) if _is_token_list(prompt) else self.prompt_tokens(prompt)
        if self.rpc_servers:
            self.check_rpc()   # clearing the KV cache already talks to the servers
        lm.clear_memory()
        t0 = time.perf_counter()
        routing = self._prefill(tokens, probs, cancel, candidates)
        prefill_s = time.perf_counter() - t0
        if routing is None:
            yield Finished("cancelled", len(tokens), 0, prefill_s, 0.0)
            return
        yield PromptRouted(self.prompt_infos(tokens), self._postprocess(routing), prefill_s)

        sampler = settings.sampler()
        detok = Detokenizer()
        stops = StopStrings(settings.stop)
        decode_s, n_past, reason = 0.0, len(tokens), "length"
        try:
            for i in range(settings.max_tokens):
                if cancel is not None and cancel.is_set():
                    reason = "cancelled"
                    break
                if n_past >= lm.n_ctx_seq:
                    reason = "context"
                    break
                t1 = time.perf_counter()
                tok = sampler.sample(lm.ctx)
                if lm.is_eog(tok):
                    reason = "eos"
                    break
                r = self._decode([tok], n_past, True, probs, candidates)
                dt = time.perf_counter() - t1
                decode_s += dt
                text = detok.push(lm.piece(tok))
                yield TokenRouted(n_past, TokenInfo(tok, text, False), self._postprocess(r), dt)
                n_past += 1
                if stops.hit(text):
                    reason = "stop"
                    break
        finally:
            sampler.close()
        yield Finished(reason, len(tokens), n_past - len(tokens), prefill_s, decode_s)

    def _postprocess(self, r: BatchRouting) -> BatchRouting:
        # For softmax_weight gating (gpt-oss) llama.cpp's `ffn_moe_probs` are the raw
        # router logits; store the softmax over all experts so probs mean the same
        # thing for every model.
        if r.probs is not None and self.info.gating == "softmax_weight":
            z = r.probs - r.probs.max(axis=-1, keepdims=True)
            e = np.exp(z)
            r.probs = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        return r

    def check_rpc(self) -> None:
        """RpcServerLost (one line) once an rpc-server holding layers has gone: ggml-rpc
        would abort the whole process on the next command sent to it."""
        if self._rpc_lost is None:
            try:
                rpc_backend.check_alive(self.rpc_servers)
            except rpc_backend.RpcServerLost as e:
                self._rpc_lost = e
                raise
        if self._rpc_lost is not None:
            ep = self._rpc_lost.endpoint   # lost inside a run: later runs say so
            raise rpc_backend.RpcServerLost(rpc_backend.lost_line(ep, earlier=True) if ep else str(self._rpc_lost),
                                            endpoint=ep)

    def unusable(self) -> str | None:
        """Why this model cannot run any more, in one line (an rpc-server holding its
        layers went away); None while it can."""
        if not self.rpc_servers:
            return None
        try:
            self.check_rpc()
        except rpc_backend.RpcServerLost as e:
            return e.one_line()
        return None

    def placement_text(self) -> str:
        """Which layers run where: "layers 0-3 on 127.0.0.1:50052; ..." ("" when unknown)."""
        return rpc_backend.describe_placement(self.placement, self.info.n_layer)

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._batch.close()
            self._batch = None
        if getattr(self, "lm", None) is not None:
            if getattr(self, "rpc_servers", None):
                try:
                    self.check_rpc()
                except rpc_backend.RpcServerLost:
                    if not rpc_backend.soft_failure():
                        # freeing the model sends RPC commands to the dead server: stock
                        # ggml-rpc would abort the process; the memory is left to the exit
                        self.lm.model = self.lm.ctx = None
                        return
                    # patched ggml-rpc skips commands to a lost server: free as usual
            self.lm.close()


def check_text(what: str, text: str) -> None:
    """Text llama.cpp's tokenizer can take: UTF-8-encodable (no lone surrogate: Python
    keeps undecodable command-line bytes and JSON's "\\ud800" escapes as those)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PromptError(f"{what} is not valid Unicode text (a lone surrogate or undecodable byte "
                          f"at character {e.start})") from None


def lc_diffusion(model) -> bool:
    fn = getattr(llama_cpp(), "llama_model_is_diffusion", None)
    return bool(fn(model)) if fn is not None else False


def _is_token_list(p) -> bool:
    return isinstance(p, list) and bool(p) and all(isinstance(t, int) for t in p)


def concat_routing(parts: list[BatchRouting]) -> BatchRouting:
    if len(parts) == 1:
        return parts[0]
    def cat(name):
        return None if getattr(parts[0], name) is None else np.concatenate([getattr(p, name) for p in parts])

    texts = None if parts[0].candidate_texts is None else {k: v for p in parts for k, v in p.candidate_texts.items()}
    return BatchRouting(cat("expert_ids"), cat("weights"), cat("probs"), cat("candidate_ids"), cat("candidate_probs"),
                        texts)
