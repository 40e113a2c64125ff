"""The websocket messages: the trace schema cut into the pieces a live run sends.

A live run is `model`, `start`, `prompt` (all prompt tokens with their routing, as
they were prefilled in one batch), one `token` per generated token, then `done`.
Concatenating the routing of `prompt` and every `token` gives the trace's routing
arrays, and `TraceAssembler` rebuilds a Trace from the messages. See docs/protocol.md.
"""
from __future__ import annotations

import numpy as np

from ..engine.events import Finished, PromptRouted, TokenRouted
from .schema import Trace, TraceFormatError, finish_entry, routing_k, token_entry

# Weights and probabilities go over the socket rounded to 6 decimals (compact JSON);
# trace files keep the exact float32 values.
WIRE_DECIMALS = 6


def _wire(a: np.ndarray) -> list:
    if a.dtype.kind == "f":
        return np.round(a.astype(np.float64), WIRE_DECIMALS).tolist()
    return a.tolist()


def _texts(texts: dict | None) -> dict:
    return {str(k): v for k, v in (texts or {}).items()}


def model_message(model: dict) -> dict:
    return {"type": "model", "model": model}


def start_message(run_id: str, prompt, settings: dict) -> dict:
    return {"type": "start", "run": run_id, "prompt": prompt, "settings": settings}


def prompt_message(ev: PromptRouted) -> dict:
    r = ev.routing
    msg = {"type": "prompt", "tokens": [token_entry(t, True) for t in ev.tokens],
           "expert_ids": _wire(r.expert_ids), "weights": _wire(r.weights),
           "seconds": round(ev.prefill_seconds, 6)}
    if r.probs is not None:
        msg["probs"] = _wire(r.probs)
    if r.candidate_ids is not None:
        msg["candidates"] = {"ids": r.candidate_ids.tolist(), "probs": _wire(r.candidate_probs),
                             "texts": _texts(r.candidate_texts)}
    return msg


def token_message(ev: TokenRouted) -> dict:
    r = ev.routing
    msg = {"type": "token", "index": ev.index, "token": token_entry(ev.token, False),
           "expert_ids": _wire(r.expert_ids[0]), "weights": _wire(r.weights[0]),
           "seconds": round(ev.decode_seconds, 6)}
    if r.probs is not None:
        msg["probs"] = _wire(r.probs[0])
    if r.candidate_ids is not None:
        msg["candidates"] = {"ids": r.candidate_ids[0].tolist(), "probs": _wire(r.candidate_probs[0]),
                             "texts": _texts(r.candidate_texts)}
    return msg


def done_message(ev: Finished, summary: dict | None = None) -> dict:
    return {"type": "done", "finish": finish_entry(ev), "summary": summary or {}}


def error_message(message: str) -> dict:
    return {"type": "error", "message": message}


def queued_message(position: int) -> dict:
    return {"type": "queued", "position": position}


def event_message(ev) -> dict:
    if isinstance(ev, PromptRouted):
        return prompt_message(ev)
    if isinstance(ev, TokenRouted):
        return token_message(ev)
    if isinstance(ev, Finished):
        return done_message(ev)
    raise TypeError(f"unknown engine event {ev!r}")


class TraceAssembler:
    """Rebuilds a Trace from a run's messages (model, start, prompt, token..., done)."""

    def __init__(self):
        self.model = None
        self.prompt = None
        self.settings: dict = {}
        self.tokens: list[dict] = []
        self.ids: list = []
        self.weights: list = []
        self.probs: list = []
        self.cand_ids: list = []
        self.cand_probs: list = []
        self.cand_texts: dict = {}
        self.finish = None

    def add(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "model":
            self.model = msg["model"]
        elif kind == "start":
            self.prompt, self.settings = msg.get("prompt"), msg.get("settings", {})
        elif kind == "prompt":
            self.tokens.extend(msg["tokens"])
            self.ids.extend(msg["expert_ids"])
            self.weights.extend(msg["weights"])
            self.probs.extend(msg.get("probs", []))
            if "candidates" in msg:
                self.cand_ids.extend(msg["candidates"]["ids"])
                self.cand_probs.extend(msg["candidates"]["probs"])
                self.cand_texts.update(msg["candidates"].get("texts") or {})
        elif kind == "token":
            self.tokens.append(msg["token"])
            self.ids.append(msg["expert_ids"])
            self.weights.append(msg["weights"])
            if "probs" in msg:
                self.probs.append(msg["probs"])
            if "candidates" in msg:
                self.cand_ids.append(msg["candidates"]["ids"])
                self.cand_probs.append(msg["candidates"]["probs"])
                self.cand_texts.update(msg["candidates"].get("texts") or {})
        elif kind == "done":
            self.finish = msg["finish"]

    def trace(self) -> Trace:
        if self.model is None:
            raise TraceFormatError("no model message received")
        L, k, E = len(self.model["moe_layers"]), routing_k(self.model, self.settings), self.model["n_expert"]
        ids = np.asarray(self.ids, np.int32).reshape(-1, L, k)
        w = np.asarray(self.weights, np.float32).reshape(-1, L, k)
        probs = np.asarray(self.probs, np.float32).reshape(-1, L, E) if self.probs else None
        N = self.settings.get("candidates") or 0
        cids = np.asarray(self.cand_ids, np.int32).reshape(-1, N) if N and self.cand_ids else None
        cprobs = np.asarray(self.cand_probs, np.float32).reshape(-1, N) if N and self.cand_ids else None
        texts = {int(k): v for k, v in self.cand_texts.items()} if cids is not None and self.cand_texts else None
        return Trace(self.model, self.prompt, self.settings, self.tokens, ids, w, probs, self.finish,
                     candidate_ids=cids, candidate_probs=cprobs, candidate_texts=texts).validate()
