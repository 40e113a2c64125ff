"""Assembling a Trace from the engine's events."""
from __future__ import annotations

import datetime

import numpy as np

from ..engine.events import Finished, PromptRouted, TokenRouted
from .schema import Trace, finish_entry, model_description, routing_k, token_entry


class TraceBuilder:
    """Feed it the events of one generation (in order); `trace()` gives the Trace."""

    def __init__(self, info, prompt, settings: dict):
        self.model = model_description(info)
        self.prompt = prompt
        self.settings = settings
        self.tokens: list[dict] = []
        self._ids: list[np.ndarray] = []
        self._w: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._ci: list[np.ndarray] = []
        self._cp: list[np.ndarray] = []
        self._ct: dict[int, str] = {}
        self.finish: dict | None = None

    def add(self, ev) -> None:
        if isinstance(ev, PromptRouted):
            toks, r = [token_entry(t, True) for t in ev.tokens], ev.routing
        elif isinstance(ev, TokenRouted):
            toks, r = [token_entry(ev.token, False)], ev.routing
        elif isinstance(ev, Finished):
            self.finish = finish_entry(ev)
            return
        else:
            raise TypeError(f"unknown engine event {ev!r}")
        self.tokens.extend(toks)
        self._ids.append(r.expert_ids)
        self._w.append(r.weights)
        if r.probs is not None:
            self._p.append(r.probs)
        if r.candidate_ids is not None:
            self._ci.append(r.candidate_ids)
            self._cp.append(r.candidate_probs)
            self._ct.update(r.candidate_texts or {})

    def trace(self) -> Trace:
        from .. import __version__  # noqa: PLC0415

        L, k, E = len(self.model["moe_layers"]), routing_k(self.model, self.settings), self.model["n_expert"]
        ids = np.concatenate(self._ids) if self._ids else np.zeros((0, L, k), np.int32)
        w = np.concatenate(self._w) if self._w else np.zeros((0, L, k), np.float32)
        probs = np.concatenate(self._p) if self._p and len(self._p) == len(self._ids) else None
        if probs is None and self.settings.get("probs") and not self._ids:
            probs = np.zeros((0, L, E), np.float32)
        N = self.settings.get("candidates") or 0
        cand_ids = cand_probs = None
        if N and len(self._ci) == len(self._ids):
            cand_ids = np.concatenate(self._ci) if self._ci else np.zeros((0, N), np.int32)
            cand_probs = np.concatenate(self._cp) if self._cp else np.zeros((0, N), np.float32)
        meta = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "moeviz_version": __version__}
        texts = dict(sorted(self._ct.items())) if cand_ids is not None and self._ct else None
        return Trace(self.model, self.prompt, self.settings, self.tokens, ids, w, probs, self.finish, meta,
                     cand_ids, cand_probs, texts).validate()
