"""The slot loop: every generation, alone or beside others, is a slot of one scheduler.

As llama.cpp's server (tools/server/server-context.cpp, update_slots): a run is a slot,
each slot its own sequence of one llama.cpp context; the scheduler admits runs in
arrival order, builds each decode batch, splits the routing rows back per run, and
decides every stop reason in one place (`_next`). Running alone is one slot
(Engine.generate); `record --tokens-from` replay is a slot whose tokens are given
(Engine.replay); `serve --parallel N` is N slots (server/worker.py).

    sched = Scheduler(engine)                       # engine.parallel slots
    sched.add(key, Run(tokens, sampling, probs=...))  # while sched.free() > 0
    while sched.active():
        for key, event in sched.step():             # PromptRouted / TokenRouted / Finished
            ...                                     # or an exception: that run failed

Each run's events are PromptRouted, TokenRouted per generated token, Finished, in order.

Why the batches look like this (exactness, docs/openai-api.md "Parallel requests"):
- A prompt is prefilled in llama_decode calls of its own, split as Engine.prefill_spans
  splits it, one chunk per step between the decode steps (a long prompt does not stall
  the others for its whole length). So its rows meet the same kernels as alone.
- A decode step holds one token per sequence, in ascending seq_id order: llama.cpp's
  per-sequence split (each sequence has its own KV stream) keeps such a batch in order,
  and both capture backends return rows in ubatch order, so row i is step row i. A
  batch mixing several tokens of one sequence with other sequences would be reordered
  by that split (llama-batch.cpp split_equal) and its routing rows with it.
- Each sequence has its own KV cells (kv_unified off), laid out as in a context of its
  own, so its attention sums run over the same cells in the same order as alone.
The remaining difference from a run alone is the decode step's matrix products over
several rows instead of one (other kernels, other summation order): float rounding,
which flips a routing decision only at a near-tie (measured in tests/test_parallel.py).

The scheduler holds the engine's lock while any slot is active, so another scheduler
and set_interventions are refused (BusyError) meanwhile: they would clear or change
what the running sequences depend on.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from ..capture.routing import BatchRouting
from ..errors import Busy
from .candidates import check_candidates
from .events import Finished, PromptRouted, TokenInfo, TokenRouted
from .text import Detokenizer, PromptError, StopStrings


class BusyError(Busy, RuntimeError):
    """A generation is already running on this engine (or every slot is taken)."""


@dataclasses.dataclass(eq=False)
class Run:
    """What a slot runs. `sampling`: the run's sampling settings, passed through as they
    are (moeviz/engine/sampling.py builds them; the loop uses only validate(),
    sampler(prompt_tokens) -> .sample(ctx, row) / .close(), max_tokens and stop); None
    with `given`. `given`: tokens fed after the prompt instead
    of sampled ones (same-token replay); the run ends when they are all decoded."""
    tokens: list[int]
    sampling: object = None
    probs: bool = False
    candidates: int = 0
    cancel: threading.Event | None = None
    given: list[int] | None = None


@dataclasses.dataclass(eq=False)
class _Slot:
    key: object
    seq: int
    run: Run
    spans: list[tuple[int, int]]           # the prompt's llama_decode calls, as alone
    sampler: object = None
    parts: list = dataclasses.field(default_factory=list)
    prefill_s: float = 0.0
    decode_s: float = 0.0
    n_generated: int = 0
    pending: int | None = None             # the token the next decode step feeds
    detok: Detokenizer = dataclasses.field(default_factory=Detokenizer)
    stops: StopStrings | None = None

    @property
    def prefilling(self) -> bool:
        return bool(self.spans)

    @property
    def n_past(self) -> int:
        return len(self.run.tokens) + self.n_generated

    def cancelled(self) -> bool:
        return self.run.cancel is not None and self.run.cancel.is_set()


class Scheduler:
    """The slots of one engine's context (n_slots: engine.parallel unless fewer)."""

    def __init__(self, engine, n_slots: int | None = None):
        self.engine = engine
        self.n_slots = min(engine.parallel, n_slots or engine.parallel)
        self._slots: dict[int, _Slot] = {}    # seq id -> slot
        self._order: list[_Slot] = []         # admission order: prefills go first come, first served
        self._locked = False

    def free(self) -> int:
        return self.n_slots - len(self._slots)

    def active(self) -> bool:
        return bool(self._slots)

    def keys(self) -> list:
        return [s.key for s in self._order]

    # Admission ------------------------------------------------------------------------
    def add(self, key, run: Run) -> None:
        """Admit a run (checked as a run alone is: its settings, candidates, tokens)."""
        self.add_group([(key, run)])

    def add_group(self, runs: list[tuple[object, Run]]) -> None:
        """Admit several runs together or none (BusyError when fewer slots are free): the
        `n` completions of one request, each its own sequence (its prompt prefilled on its
        own, so each equals the same run alone)."""
        checked = [(key, self._check(run)) for key, run in runs]
        if len(checked) > self.free():
            raise BusyError(f"all {self.n_slots} parallel slots are busy" if self.free() == 0 else
                            f"{len(checked)} runs need as many free slots; {self.free()} of {self.n_slots} are free")
        added = []
        try:
            for key, run in checked:
                added.append(self._admit(key, run))
        except BaseException:
            for slot in added:
                self._remove(slot)
            raise

    def _check(self, run: Run) -> Run:
        engine = self.engine
        n_vocab = engine.lm.n_vocab
        check_candidates(run.candidates, n_vocab)
        if run.given is None:
            run.sampling = run.sampling.validate()
            run.tokens = engine.check_tokens(list(run.tokens))
            return run
        run.tokens, run.given = list(run.tokens), list(run.given)
        n = len(run.tokens) + len(run.given)
        if not run.tokens:
            raise PromptError("the prompt is empty")
        bad = next((t for t in run.tokens + run.given if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise PromptError(f"token id {bad} is outside the vocabulary (0-{n_vocab - 1})")
        if n > engine.lm.n_ctx_seq:
            raise PromptError(f"{n} tokens do not fit the context ({engine.lm.n_ctx_seq} tokens)")
        return run

    def _admit(self, key, run: Run) -> _Slot:
        engine = self.engine
        if not self._locked:
            if not engine.context_lock.acquire(blocking=False):
                raise BusyError("a generation is already running on this model")
            self._locked = True
        seq = min(set(range(self.n_slots)) - set(self._slots))
        try:
            engine.liveness.check()   # clearing the cache already talks to the servers
            if self._slots:
                engine.lm.clear_sequence(seq)
            else:
                engine.lm.clear_memory()   # nothing else runs: the whole cache, as at start
        except BaseException:
            self._release_if_idle()
            raise
        slot = _Slot(key, seq, run, engine.prefill_spans(len(run.tokens), run.candidates))
        self._slots[seq] = slot
        self._order.append(slot)
        return slot

    # The loop -------------------------------------------------------------------------
    def step(self) -> list[tuple[object, object]]:
        """One prefill chunk (the oldest run still prefilling) and one decode step (every
        run with a token to feed): the events this made, per run key. A run whose decode
        failed gets its exception instead of an event and is over."""
        out: list[tuple[object, object]] = []
        for slot in list(self._order):
            if slot.cancelled():
                self._end(slot, "cancelled", out)
        if self._order:
            try:
                self.engine.liveness.check()   # once per step: can the model still run (RPC)?
            except Exception as exc:   # noqa: BLE001 - it cannot: every run fails with that line
                for slot in list(self._order):
                    self._fail(slot, exc, out)
                return out
        prefilling = next((s for s in self._order if s.prefilling), None)
        if prefilling is not None:
            self._prefill_chunk(prefilling, out)
        ready = sorted((s for s in self._order if s.pending is not None), key=lambda s: s.seq)
        if ready:
            self._decode_step(ready, out)
        return out

    def cancel_all(self) -> list[tuple[object, object]]:
        out: list[tuple[object, object]] = []
        for slot in list(self._order):
            self._end(slot, "cancelled", out)
        return out

    close = cancel_all

    def _prefill_chunk(self, slot: _Slot, out: list) -> None:
        engine, run = self.engine, slot.run
        s, e = slot.spans[0]
        t0 = time.perf_counter()
        try:
            slot.parts.append(engine.decode_prompt(run.tokens[s:e], s, run.probs, run.candidates, slot.seq))
        except Exception as exc:   # noqa: BLE001 - the run fails, the others go on
            self._fail(slot, exc, out)
            return
        slot.prefill_s += time.perf_counter() - t0
        slot.spans.pop(0)
        if slot.spans:
            return
        routing = engine.postprocess(concat_routing(slot.parts))
        slot.parts = []
        out.append((slot.key, PromptRouted(engine.prompt_infos(run.tokens), routing, slot.prefill_s)))
        if run.given is None:
            # the prompt too: penalties look back over it (llama-server feeds its slot's prompt)
            slot.sampler = run.sampling.sampler(run.tokens)
            slot.stops = StopStrings(run.sampling.stop)
        self._next(slot, -1, out)

    def _decode_step(self, ready: list[_Slot], out: list) -> None:
        engine = self.engine
        t0 = time.perf_counter()
        try:
            r = engine.decode_rows([s.pending for s in ready], [s.n_past for s in ready], [s.seq for s in ready],
                                   any(s.run.probs for s in ready))
        except Exception as exc:   # noqa: BLE001 - every run in the step fails with it
            for slot in ready:
                self._fail(slot, exc, out)
            return
        logits = engine.logits(len(ready)) if any(s.run.candidates for s in ready) else None
        dt = time.perf_counter() - t0
        for row, slot in enumerate(ready):
            tok, pos = slot.pending, slot.n_past
            mine = BatchRouting(r.expert_ids[row:row + 1], r.weights[row:row + 1],
                                r.probs[row:row + 1] if slot.run.probs and r.probs is not None else None)
            if slot.run.candidates:
                engine.add_candidates(mine, logits[row:row + 1], slot.run.candidates)
            slot.pending = None
            slot.decode_s += dt
            slot.n_generated += 1
            text = slot.detok.push(engine.lm.piece(tok))
            out.append((slot.key, TokenRouted(pos, TokenInfo(tok, text, False), engine.postprocess(mine), dt)))
            if slot.stops is not None and slot.stops.hit(text):
                self._end(slot, "stop", out)
            else:
                self._next(slot, row, out)   # from this step's logits, fed in the next step

    def _next(self, slot: _Slot, row: int, out: list) -> None:
        """Every stop reason, decided here once, then the token the next step feeds:
        sampled at once (logits are only valid until the next decode), or the next given."""
        run = slot.run
        limit = run.sampling.max_tokens if run.given is None else len(run.given)
        if slot.n_generated >= limit:
            self._end(slot, "length", out)
        elif slot.cancelled():
            self._end(slot, "cancelled", out)
        elif slot.n_past >= self.engine.lm.n_ctx_seq:
            self._end(slot, "context", out)
        elif run.given is not None:
            slot.pending = run.given[slot.n_generated]
        else:
            try:
                tok = slot.sampler.sample(self.engine.lm.ctx, row)
            except Exception as exc:   # noqa: BLE001 - e.g. a grammar that allows no token: this run fails
                self._fail(slot, exc, out)
                return
            if self.engine.lm.is_eog(tok):
                self._end(slot, "eos", out)
            else:
                slot.pending = tok

    # Leaving --------------------------------------------------------------------------
    def _end(self, slot: _Slot, reason: str, out: list) -> None:
        # (cancelled while prefilling: nothing generated, as a run alone ends it)
        finish = Finished(reason, len(slot.run.tokens), slot.n_generated, slot.prefill_s, slot.decode_s)
        self._remove(slot)
        out.append((slot.key, finish))

    def _fail(self, slot: _Slot, exc: Exception, out: list) -> None:
        self._remove(slot)
        out.append((slot.key, exc))

    def _remove(self, slot: _Slot) -> None:
        if slot.sampler is not None:
            slot.sampler.close()
            slot.sampler = None
        self._slots.pop(slot.seq, None)
        self._order.remove(slot)
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if not self._slots and self._locked:
            self._locked = False
            self.engine.context_lock.release()


def run_alone(engine, run: Run):
    """One run as the only slot: its events as it makes them (an exception raised)."""
    sched = Scheduler(engine, n_slots=1)
    sched.add(0, run)
    try:
        while sched.active():
            for _, ev in sched.step():
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
    finally:
        sched.close()


def concat_routing(parts: list[BatchRouting]) -> BatchRouting:
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        return None if getattr(parts[0], name) is None else np.concatenate([getattr(p, name) for p in parts])

    texts = None if parts[0].candidate_texts is None else {k: v for p in parts for k, v in p.candidate_texts.items()}
    return BatchRouting(cat("expert_ids"), cat("weights"), cat("probs"), cat("candidate_ids"), cat("candidate_probs"),
                        texts)
