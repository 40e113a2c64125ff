"""Recording a run: the one routine behind `moeviz record`, `moeviz export --model`, the
server's live runs (and the OpenAI API beside them).

    rec = Recording(engine, prompt, sampling, probs=True, named=library_prompt)
    for event in rec.events(cancel):   # the engine's events, each added to the trace
        ...                            # send it, show progress, ...
    trace = rec.trace()

`record(...)` does the loop for callers that only want the trace. The trace's
`settings` are built here and nowhere else: the sampling settings, `probs`, `capture`,
the interventions (`experts_per_token`, `mask`) and `candidates`, and for a library
prompt its `prompt_name` / `prompt_title` / `prompt_domain` (what the page, permalinks
and static sites call the run).

`replay_trace(engine, trace)` is same-token replay: another trace's exact tokens run
through this engine's model (`moeviz record --tokens-from`), with no sampling.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Iterator

import datetime
import time

from .engine import Finished, SamplingSettings
from .engine.candidates import check_candidates
from .engine.masks import parse_mask
from .engine.text import Detokenizer
from .errors import UserError
from .trace.builder import TraceBuilder
from .trace.schema import Trace, finish_entry, model_description


class ReplayError(UserError, ValueError):
    """A trace's tokens cannot be replayed on this model (another vocabulary)."""


@dataclasses.dataclass(frozen=True)
class Named:
    """A library prompt's identity, as a run carries it (moeviz.prompts.LibraryPrompt has the same fields)."""
    name: str
    title: str | None = None
    domain: str | None = None


def trace_settings(sampling: SamplingSettings, *, capture: str, probs: bool, named=None,
                   experts_per_token: int | None = None, mask=(), candidates: int = 0) -> dict:
    """A trace's `settings`. `named`: the library prompt run (anything with name, title
    and domain), or None for a prompt given directly. `experts_per_token`: the top-k the
    routers used (None: not known here, the model's); `mask`: (layer, expert) pairs."""
    out = {**dataclasses.asdict(sampling), "probs": probs, "capture": capture, "prompt_name": None}
    if experts_per_token is not None:
        out["experts_per_token"] = experts_per_token
    out["mask"] = [[int(a), int(b)] for a, b in mask]
    out["candidates"] = candidates
    if named is not None:
        out.update(prompt_name=named.name, prompt_title=named.title, prompt_domain=named.domain)
    return out


def placement_settings(engine) -> dict:
    """`settings.rpc` for a run whose layers were split over rpc-servers: the servers
    (--rpc, in order) and which layers ran where ([{device, host, layers: [a, b]}],
    layer n_layer being the output head); {} for a local run."""
    servers = list(getattr(engine, "rpc_servers", None) or [])
    if not servers:
        return {}
    return {"rpc": {"servers": servers, "placement": list(getattr(engine, "placement", []))}}


def wanted_interventions(engine, experts_per_token=None, mask=None) -> tuple[int, list]:
    """The routers' state a run asks for: (top-k, (layer, expert) pairs masked). None:
    the engine's own (its `experts_per_token` / `mask` arguments; by default the model's
    top-k, nothing masked); `mask` in any form parse_mask reads ("" or [] for none)."""
    info = engine.info
    default_k, default_mask = getattr(engine, "default_interventions", (info.n_expert_used, []))
    k = default_k if experts_per_token is None else experts_per_token
    pairs = list(default_mask) if mask is None else parse_mask(mask, info.moe_layers, info.n_expert)
    return k, pairs


def current_interventions(engine) -> tuple[int, list]:
    info = engine.info
    return getattr(engine, "experts_per_token", info.n_expert_used), list(getattr(engine, "mask", []))


def apply_interventions(engine, experts_per_token=None, mask=None) -> None:
    """Put the engine's routers in the asked state (wanted_interventions). An unchanged
    state is not sent to llama.cpp again, so plain runs work on a library without the
    interventions, and beside other runs of a parallel batch."""
    k, pairs = wanted_interventions(engine, experts_per_token, mask)
    if (k, pairs) != current_interventions(engine):
        engine.set_interventions(experts_per_token=k, mask=pairs)


class Recording:
    """One run of `prompt` on `engine`. The prompt is tokenized (and checked) at once,
    so a caller can refuse it before anything is sent or decoded."""

    def __init__(self, engine, prompt, sampling: SamplingSettings, *, probs: bool = False, named=None,
                 experts_per_token: int | None = None, mask=None, candidates: int = 0):
        self.engine = engine
        self.prompt = prompt
        self.sampling = sampling.validate()
        self.probs = probs
        self.candidates = check_candidates(candidates, engine.lm.n_vocab) if candidates else 0
        self.tokens = engine.prompt_tokens(prompt)
        apply_interventions(engine, experts_per_token, mask)
        self.settings = trace_settings(self.sampling, capture=engine.capture.name, probs=probs, named=named,
                                       experts_per_token=engine.experts_per_token, mask=engine.mask,
                                       candidates=self.candidates)
        self.settings.update(placement_settings(engine))
        self._builder = TraceBuilder(engine.info, prompt, self.settings)

    def events(self, cancel: threading.Event | None = None) -> Iterator:
        # a slot of its own (engine/slots.py): its Finished comes once the slot has left,
        # so whoever hears "done" may start the next run at once
        for ev in self.engine.generate(self.tokens, self.sampling, probs=self.probs, cancel=cancel,
                                       candidates=self.candidates):
            self._builder.add(ev)
            yield ev

    def add(self, event) -> None:
        """An event of this run that someone else decoded (the server's slot loop)."""
        self._builder.add(event)

    def trace(self) -> Trace:
        return self._builder.trace()


def record(engine, prompt, sampling: SamplingSettings, *, probs: bool = False, named=None,
           cancel: threading.Event | None = None, on_event: Callable | None = None,
           experts_per_token: int | None = None, mask=None, candidates: int = 0) -> Trace:
    rec = Recording(engine, prompt, sampling, probs=probs, named=named, experts_per_token=experts_per_token,
                    mask=mask, candidates=candidates)
    for ev in rec.events(cancel):
        if on_event is not None:
            on_event(ev)
    return rec.trace()


def replay_trace(engine, source: Trace, *, source_name: str | None = None, fast: bool = False, probs: bool = False,
                 candidates: int = 0, experts_per_token: int | None = None, mask=None) -> Trace:
    """`source`'s exact tokens (prompt and generated) through `engine`'s model, no sampling.

    By default with the source's batch structure (the prompt as one prefill, then one
    token per decode), so the same model and settings reproduce its routing bit for
    bit; `fast` prefills every token at once (same tokens, other batch shapes: routing
    can differ in the last float bits). The models must share the vocabulary: every
    token must read as the same text (ReplayError otherwise)."""
    lm = engine.lm
    src_vocab = source.model.get("n_vocab")
    name = source_name or source.model.get("name") or "the trace"
    if isinstance(src_vocab, int) and src_vocab != lm.n_vocab:
        raise ReplayError(f"{name} comes from a model with a {src_vocab}-token vocabulary, this one has {lm.n_vocab}: "
                          "same-token replay needs the same vocabulary")
    ids = [t["id"] for t in source.tokens]
    if not ids:
        raise ReplayError(f"{name} has no tokens to replay")
    bad = [t for t in ids if not 0 <= t < lm.n_vocab]
    if bad:
        raise ReplayError(f"{name} has token id {bad[0]}, outside this model's vocabulary (0-{lm.n_vocab - 1})")
    n_prompt = source.n_prompt
    entries = _token_entries(lm, ids, n_prompt)
    for i, (mine, theirs) in enumerate(zip(entries, source.tokens)):
        if mine["text"] != theirs["text"]:
            raise ReplayError(f"token {i} (id {ids[i]}) reads {theirs['text'][:20]!r} in {name} but "
                              f"{mine['text'][:20]!r} with this model: same-token replay needs the same vocabulary")
    candidates = check_candidates(candidates, lm.n_vocab) if candidates else 0
    apply_interventions(engine, experts_per_token, mask)
    t0 = time.perf_counter()
    # a slot whose tokens are given (engine/slots.py)
    routing = engine.replay(ids, len(ids) if fast else n_prompt, probs=probs, candidates=candidates)
    seconds = time.perf_counter() - t0
    settings = {k: v for k, v in (source.settings or {}).items()
                if k not in ("experts_per_token", "mask", "candidates", "probs", "capture", "tokens_from", "rpc")}
    settings.update(placement_settings(engine))
    settings.update(probs=probs, capture=engine.capture.name, experts_per_token=engine.experts_per_token,
                    mask=[[a, b] for a, b in engine.mask], candidates=candidates,
                    tokens_from={"trace": name, "model": source.model.get("name"),
                                 "batches": "all at once" if fast else "original"})
    f = source.finish or {}
    finish = finish_entry(Finished(f.get("reason", "length"), n_prompt, len(ids) - n_prompt, seconds, 0.0))
    from . import __version__  # noqa: PLC0415

    meta = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "moeviz_version": __version__}
    return Trace(model_description(engine.info), source.prompt, settings, entries, routing.expert_ids, routing.weights,
                 routing.probs, finish, meta, routing.candidate_ids, routing.candidate_probs,
                 routing.candidate_texts).validate()


def _token_entries(lm, ids: list[int], n_prompt: int) -> list[dict]:
    """Token entries as Engine.generate makes them (its Detokenizer, flushed after the prompt)."""
    detok = Detokenizer()
    out = [{"id": t, "text": detok.push(lm.piece(t)), "prompt": True} for t in ids[:n_prompt]]
    out[-1]["text"] += detok.flush()
    detok = Detokenizer()
    out += [{"id": t, "text": detok.push(lm.piece(t)), "prompt": False} for t in ids[n_prompt:]]
    return out
