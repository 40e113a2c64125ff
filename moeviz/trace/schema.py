"""moeviz trace format v1: one schema for trace files, the websocket and static exports.

See docs/trace-format.md. A trace is the model description, the prompt and settings,
the token list, and routing arrays shaped [n_tokens][n_moe_layers][k] (and optionally
[n_tokens][n_moe_layers][n_expert] router probabilities, and [n_tokens][N] next-token
candidates). k is the top-k the run used: `settings.experts_per_token` when the run
overrode it, else the model's `n_expert_used` (`routing_k`). In memory the arrays are
numpy; in JSON they are nested lists; in the binary form, raw little-endian blocks.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import UserError
from ..settings import check_recorded

FORMAT = "moeviz-trace"
VERSION = 1
MODEL_FIELDS = ("name", "architecture", "n_layer", "moe_layers", "n_expert", "n_expert_used",
                "total_params", "active_params")


class TraceFormatError(UserError, ValueError):
    """A trace file or message does not follow the schema; the message says where.

    `file`: the trace file it was read from, when it came from one (io.load names it on
    the way out, the same error object, not a copy of its text)."""

    file = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.file}: {text}" if self.file is not None else text


# Shapes a trace may claim: what llama.cpp can load (LLAMA_MAX_LAYERS, LLAMA_MAX_EXPERTS in
# llama-hparams.h; gguf_info refuses more experts too). Work on a trace (stats, previews)
# is then bounded by its data, never by a claimed size alone.
MAX_LAYERS = 512
MAX_EXPERTS = 1024
MAX_VOCAB = 2**31 - 1
MAX_TOKENS = 1 << 24
FINISH_REASONS = ("length", "eos", "stop", "context", "cancelled")


def routing_k(model: dict, settings: dict | None) -> int:
    """Experts per token in a trace's routing arrays: the run's override
    (`settings.experts_per_token`) or the model's own top-k."""
    k = (settings or {}).get("experts_per_token")
    return model["n_expert_used"] if k is None else k


def trace_mask(settings: dict | None) -> list[tuple[int, int]]:
    """The (model layer, expert) pairs a run masked (`settings.mask`), [] for none."""
    return [(int(a), int(b)) for a, b in (settings or {}).get("mask") or []]


def model_description(info) -> dict:
    """The `model` object of a trace from a gguf_info.ModelInfo."""
    return {
        "name": info.name, "architecture": info.architecture, "n_layer": info.n_layer,
        "moe_layers": list(info.moe_layers), "dense_layers": list(info.dense_layers),
        "n_expert": info.n_expert, "n_expert_used": info.n_expert_used,
        "n_shared_experts": info.n_shared_experts, "gating": info.gating,
        "weights_normalized": info.weights_normalized, "weights_scale": info.weights_scale,
        "n_expert_groups": info.n_expert_groups, "n_group_used": info.n_group_used,
        "n_vocab": info.n_vocab, "n_embd": info.n_embd,
        "total_params": info.total_params, "active_params": info.active_params,
    } | ({"kept_experts": info.kept_experts} if getattr(info, "kept_experts", None) else {})  # moeviz prune


@dataclasses.dataclass
class Trace:
    model: dict
    prompt: Any                      # str, or a list of chat messages
    settings: dict
    tokens: list[dict]               # {"id": int, "text": str, "prompt": bool}
    expert_ids: np.ndarray           # int32 [n_tokens, n_moe_layers, k]
    weights: np.ndarray              # float32 [n_tokens, n_moe_layers, k]
    probs: np.ndarray | None = None  # float32 [n_tokens, n_moe_layers, n_expert]
    finish: dict | None = None       # {"reason", "prefill_seconds", "decode_seconds"}
    meta: dict = dataclasses.field(default_factory=dict)  # created, moeviz_version, ...
    candidate_ids: np.ndarray | None = None    # int32 [n_tokens, N]: top-N next tokens per position
    candidate_probs: np.ndarray | None = None  # float32 [n_tokens, N]: their probabilities
    candidate_texts: dict[int, str] | None = None  # {token id: its text} for the candidates' ids

    @property
    def k(self) -> int:
        """Experts per token in the routing arrays (routing_k)."""
        return routing_k(self.model, self.settings)

    @property
    def mask(self) -> list[tuple[int, int]]:
        return trace_mask(self.settings)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_prompt(self) -> int:
        return sum(1 for t in self.tokens if t["prompt"])

    @property
    def prompt_mask(self) -> np.ndarray:
        return np.fromiter((t["prompt"] for t in self.tokens), dtype=bool, count=len(self.tokens))

    def header(self) -> dict:
        """Everything but the routing arrays (JSON-ready)."""
        h = {"format": FORMAT, "version": VERSION, "model": self.model, "prompt": self.prompt,
             "settings": self.settings, "tokens": self.tokens}
        if self.candidate_texts is not None:   # the arrays are the routing's companions; the texts header data
            h["candidates"] = {"texts": {str(k): v for k, v in sorted(self.candidate_texts.items())}}
        if self.finish is not None:
            h["finish"] = self.finish
        if self.meta:
            h["meta"] = self.meta
        return h

    def validate(self) -> "Trace":
        validate_header(self.header())
        n, L, k, E = self.n_tokens, len(self.model["moe_layers"]), self.k, self.model["n_expert"]
        _check_array("routing.expert_ids", self.expert_ids, (n, L, k))
        _check_array("routing.weights", self.weights, (n, L, k))
        if n and (self.expert_ids.min() < 0 or self.expert_ids.max() >= E):
            bad = np.argwhere((self.expert_ids < 0) | (self.expert_ids >= E))[0]
            raise TraceFormatError(f"routing.expert_ids[{bad[0]}][{bad[1]}][{bad[2]}] = "
                                   f"{self.expert_ids[tuple(bad)]} is outside [0, {E})")
        _check_finite("routing.weights", self.weights)
        if self.probs is not None:
            _check_array("routing.probs", self.probs, (n, L, E))
            _check_finite("routing.probs", self.probs)
        if n and self.mask:
            banned = np.zeros((L, E), bool)
            rows = {layer: i for i, layer in enumerate(self.model["moe_layers"])}
            for layer, e in self.mask:
                banned[rows[layer], e] = True
            hit = banned[np.arange(L)[None, :, None], self.expert_ids]
            if hit.any():
                t, li, j = np.argwhere(hit)[0]
                raise TraceFormatError(f"routing.expert_ids[{t}][{li}][{j}] = {self.expert_ids[t, li, j]} is masked "
                                       f"(settings.mask has [{self.model['moe_layers'][li]}, {self.expert_ids[t, li, j]}])")
        self._validate_candidates()
        return self

    def _validate_candidates(self) -> None:
        ids, probs = self.candidate_ids, self.candidate_probs
        if ids is None and probs is None:
            return
        if ids is None or probs is None:
            raise TraceFormatError(f"candidates.{'ids' if ids is None else 'probs'} is missing")
        for name, a in (("candidates.ids", ids), ("candidates.probs", probs)):
            if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[0] != self.n_tokens:
                raise TraceFormatError(f"{name} has shape {list(np.shape(a))}, expected [{self.n_tokens}, N] [n_tokens][N]")
        if ids.shape != probs.shape or ids.shape[1] < 1:
            raise TraceFormatError(f"candidates.ids has shape {list(ids.shape)} and candidates.probs {list(probs.shape)}: "
                                   "expected the same [n_tokens][N], N >= 1")
        V = self.model.get("n_vocab")
        V = V if isinstance(V, int) and not isinstance(V, bool) and V > 0 else 2**31 - 1
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            bad = np.argwhere((ids < 0) | (ids >= V))[0]
            raise TraceFormatError(f"candidates.ids[{bad[0]}][{bad[1]}] = {ids[tuple(bad)]} is outside [0, {V})")
        if ids.size and ids.shape[1] > 1:
            srt = np.sort(ids, axis=1)
            dup = np.argwhere(srt[:, 1:] == srt[:, :-1])
            if dup.size:
                raise TraceFormatError(f"candidates.ids[{dup[0][0]}] lists token {srt[dup[0][0], dup[0][1]]} twice")
        _check_finite("candidates.probs", probs)
        texts = self.candidate_texts
        if texts is not None:
            if not isinstance(texts, dict) or not all(_is_int(k) and isinstance(v, str) for k, v in texts.items()):
                raise TraceFormatError("candidates.texts must map token ids to their texts")
            missing = next((int(t) for t in np.unique(ids) if int(t) not in texts), None)
            if missing is not None:
                raise TraceFormatError(f"candidates.texts has no text for candidate token {missing}")
        if probs.size and (probs.min() < 0 or probs.max() > 1):
            bad = np.argwhere((probs < 0) | (probs > 1))[0]
            raise TraceFormatError(f"candidates.probs[{bad[0]}][{bad[1]}] = {probs[tuple(bad)]} is not a probability")

    def equals(self, other: "Trace") -> bool:
        same = self.header() == other.header()
        same = same and np.array_equal(self.expert_ids, other.expert_ids) and np.array_equal(self.weights, other.weights)
        for a, b in ((self.probs, other.probs), (self.candidate_ids, other.candidate_ids),
                     (self.candidate_probs, other.candidate_probs)):
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        return same


def _check_array(name: str, arr, shape: tuple[int, ...]) -> None:
    if not isinstance(arr, np.ndarray):
        raise TraceFormatError(f"{name} is missing")
    if arr.shape != shape:
        raise TraceFormatError(f"{name} has shape {list(arr.shape)}, expected {list(shape)} "
                               "[n_tokens][n_moe_layers][k or n_expert]")


def _check_finite(name: str, arr: np.ndarray) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise TraceFormatError(f"{name}[{']['.join(map(str, bad))}] is not a finite number")


def validate_header(h: Any) -> None:
    if not isinstance(h, dict):
        raise TraceFormatError("a trace must be a JSON object")
    if h.get("format") != FORMAT:
        raise TraceFormatError(f"not a moeviz trace (format is {h.get('format')!r}, expected {FORMAT!r})")
    if h.get("version") != VERSION:
        raise TraceFormatError(f"unsupported trace version {h.get('version')!r} (this moeviz reads version {VERSION})")
    model = h.get("model")
    if not isinstance(model, dict):
        raise TraceFormatError("trace has no 'model' object")
    for f in MODEL_FIELDS:
        if f not in model:
            raise TraceFormatError(f"model.{f} is missing")
    for f in ("n_layer", "n_expert", "n_expert_used", "total_params", "active_params"):
        if not isinstance(model[f], int) or isinstance(model[f], bool) or model[f] < 0:
            raise TraceFormatError(f"model.{f} must be a non-negative integer")
    if model["n_expert"] < 1 or not 1 <= model["n_expert_used"] <= model["n_expert"]:
        raise TraceFormatError("model.n_expert_used must be between 1 and model.n_expert")
    if model["n_expert"] > MAX_EXPERTS:
        raise TraceFormatError(f"model.n_expert is {model['n_expert']}; traces have at most {MAX_EXPERTS} experts "
                               "(llama.cpp's limit)")
    if model["n_layer"] > MAX_LAYERS:
        raise TraceFormatError(f"model.n_layer is {model['n_layer']}; traces have at most {MAX_LAYERS} layers "
                               "(llama.cpp's limit)")
    if not isinstance(model["moe_layers"], list) or any(isinstance(i, bool) for i in model["moe_layers"]):
        raise TraceFormatError("model.moe_layers must list layer indices below model.n_layer")
    ml = model["moe_layers"]
    if not isinstance(ml, list) or not all(isinstance(i, int) and 0 <= i < model["n_layer"] for i in ml):
        raise TraceFormatError("model.moe_layers must list layer indices below model.n_layer")
    if len(set(ml)) != len(ml) or ml != sorted(ml):
        raise TraceFormatError("model.moe_layers must be increasing and distinct")
    if not isinstance(h.get("settings", {}), dict):
        raise TraceFormatError("settings must be an object")
    _validate_interventions(h.get("settings", {}), model)
    tokens = h.get("tokens")
    if not isinstance(tokens, list):
        raise TraceFormatError("trace has no 'tokens' list")
    seen_generated = False
    for i, t in enumerate(tokens):
        if not (isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("text"), str)
                and isinstance(t.get("prompt"), bool)):
            raise TraceFormatError(f"tokens[{i}] must be {{\"id\": int, \"text\": str, \"prompt\": bool}}")
        if t["prompt"] and seen_generated:
            raise TraceFormatError(f"tokens[{i}] is a prompt token after a generated one")
        seen_generated = seen_generated or not t["prompt"]
    _validate_fields(h, model, tokens)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate_fields(h: dict, model: dict, tokens: list) -> None:
    """The rest of a header, field by field: types, ranges, and agreement with the tokens."""
    for f in ("name", "architecture", "gating"):
        if model.get(f) is not None and not isinstance(model[f], str):
            raise TraceFormatError(f"model.{f} must be a string")
    n_layer = model["n_layer"]
    dense = model.get("dense_layers")
    if dense is not None and not (isinstance(dense, list) and all(_whole(i) and 0 <= i < n_layer for i in dense)):
        raise TraceFormatError("model.dense_layers must list layer indices below model.n_layer")
    for f in ("n_vocab", "n_embd", "n_shared_experts", "n_expert_groups", "n_group_used"):
        v = model.get(f)
        if v is not None and not (_whole(v) and 0 <= v <= MAX_VOCAB):
            raise TraceFormatError(f"model.{f} must be a non-negative integer")
    if len(tokens) > MAX_TOKENS:
        raise TraceFormatError(f"trace has {len(tokens)} tokens; at most {MAX_TOKENS} are read")
    vocab = model.get("n_vocab") or MAX_VOCAB
    for i, t in enumerate(tokens):
        if isinstance(t["id"], bool) or not 0 <= t["id"] < vocab:
            raise TraceFormatError(f"tokens[{i}].id {t['id']!r} is not a token id (0-{vocab - 1})")
    prompt = h.get("prompt")
    if prompt is not None and not isinstance(prompt, (str, list)):
        raise TraceFormatError("prompt must be text or a list of chat messages")
    if not isinstance(h.get("meta", {}), dict):
        raise TraceFormatError("meta must be an object")
    _validate_settings(h.get("settings", {}))
    finish = h.get("finish")
    if finish is not None:
        _validate_finish(finish, tokens)


# What a run records beside its run settings (moeviz/settings.py checks those)
_RECORDED_TEXT = ("capture", "prompt_name", "prompt_title", "prompt_domain")


def _validate_settings(settings: dict) -> None:
    check_recorded(settings, TraceFormatError)
    for f in _RECORDED_TEXT:
        if settings.get(f) is not None and not isinstance(settings[f], str):
            raise TraceFormatError(f"settings.{f} must be a text")


def _validate_finish(finish, tokens: list) -> None:
    if not isinstance(finish, dict):
        raise TraceFormatError("finish must be an object")
    if finish.get("reason") not in FINISH_REASONS:
        raise TraceFormatError(f"finish.reason must be one of {', '.join(FINISH_REASONS)}")
    for f in ("n_prompt", "n_generated"):
        if f in finish and not (_whole(finish[f]) and finish[f] >= 0):
            raise TraceFormatError(f"finish.{f} must be a non-negative integer")
    for f in ("prefill_seconds", "decode_seconds"):
        v = finish.get(f)
        if v is not None and not ((_whole(v) or isinstance(v, float)) and 0 <= v < float("inf")):
            raise TraceFormatError(f"finish.{f} must be a non-negative number of seconds")
    n_prompt = sum(1 for t in tokens if t["prompt"])
    if "n_generated" in finish and finish["n_generated"] != len(tokens) - n_prompt:
        raise TraceFormatError(f"finish.n_generated is {finish['n_generated']} but the trace has "
                               f"{len(tokens) - n_prompt} generated tokens")
    # a run cancelled during its prefill has no tokens but knows its prompt's length
    if "n_prompt" in finish and tokens and finish["n_prompt"] != n_prompt:
        raise TraceFormatError(f"finish.n_prompt is {finish['n_prompt']} but the trace has {n_prompt} prompt tokens")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate_interventions(settings: dict, model: dict) -> None:
    """settings.experts_per_token (the run's top-k), settings.mask ([layer, expert]
    pairs never selected) and settings.candidates (N) where a run has them."""
    E = model["n_expert"]
    k = settings.get("experts_per_token")
    if k is not None and not (_is_int(k) and 1 <= k <= E):
        raise TraceFormatError(f"settings.experts_per_token must be an integer from 1 to {E} (model.n_expert)")
    mask = settings.get("mask")
    if mask is not None:
        if not isinstance(mask, list):
            raise TraceFormatError("settings.mask must be a list of [layer, expert] pairs")
        layers = set(model["moe_layers"]) if isinstance(model["moe_layers"], list) else set()
        for i, p in enumerate(mask):
            if not (isinstance(p, list) and len(p) == 2 and _is_int(p[0]) and _is_int(p[1])):
                raise TraceFormatError(f"settings.mask[{i}] must be a [layer, expert] pair of integers")
            if p[0] not in layers:
                raise TraceFormatError(f"settings.mask[{i}]: layer {p[0]} is not in model.moe_layers")
            if not 0 <= p[1] < E:
                raise TraceFormatError(f"settings.mask[{i}]: expert {p[1]} is outside [0, {E})")
    n = settings.get("candidates")
    if n is not None and not (_is_int(n) and n >= 0):
        raise TraceFormatError("settings.candidates must be a non-negative integer")


def token_entry(token, prompt: bool) -> dict:
    """A trace's (and a message's) entry for one token: an engine TokenInfo."""
    return {"id": token.id, "text": token.text, "prompt": prompt}


def finish_entry(ev) -> dict:
    """A trace's `finish` (and the `done` message's) from the engine's Finished event."""
    return {"reason": ev.reason, "n_prompt": ev.n_prompt, "n_generated": ev.n_generated,
            "prefill_seconds": round(ev.prefill_seconds, 6), "decode_seconds": round(ev.decode_seconds, 6)}
