"""Parallel generation (`serve --parallel N`): up to N runs share one llama.cpp context,
each its own sequence, and every decode step feeds one token of each generating run in
one llama_decode — continuous batching, as llama.cpp's server does with slots.

    batch = BatchedGeneration(engine)            # engine made with parallel=N
    batch.add(key, tokens, sampling, probs=...)  # while batch.free() > 0
    while batch.active():
        for key, event in batch.step():          # PromptRouted / TokenRouted / Finished
            ...                                  # or an exception: that run failed

The events are the ones Engine.generate yields for a run alone, in the same order.

Why the batches look like this (exactness, docs/openai-api.md "Parallel requests"):
- A prompt is prefilled in llama_decode calls of its own, split exactly as a run alone
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
"""
from __future__ import annotations

import dataclasses
import threading
import time

from ..llama.sampler import SamplerChain
from ..capture.routing import BatchRouting
from .candidates import check_candidates
from .core import BusyError, concat_routing
from .events import Finished, PromptRouted, TokenInfo, TokenRouted
from .sampling import SamplingSettings
from .text import Detokenizer, StopStrings


@dataclasses.dataclass(eq=False)
class _Slot:
    key: object
    seq: int
    tokens: list[int]
    settings: SamplingSettings
    probs: bool
    candidates: int
    cancel: threading.Event | None
    spans: list[tuple[int, int]]           # the prompt's llama_decode calls, as alone
    sampler: SamplerChain | None = None
    parts: list = dataclasses.field(default_factory=list)
    prefill_s: float = 0.0
    decode_s: float = 0.0
    n_generated: int = 0
    pending: int | None = None             # the sampled token the next step feeds
    detok: Detokenizer = dataclasses.field(default_factory=Detokenizer)
    stops: StopStrings | None = None

    @property
    def prefilling(self) -> bool:
        return bool(self.spans)

    @property
    def n_past(self) -> int:
        return len(self.tokens) + self.n_generated


class BatchedGeneration:
    """The slots of one engine. Holds the engine's lock while any run is active, so
    Engine.generate / replay / set_interventions are refused (BusyError) meanwhile:
    they would clear or change what the running sequences depend on."""

    def __init__(self, engine):
        self.engine = engine
        self.n_slots = engine.parallel
        self._slots: dict[int, _Slot] = {}    # seq id -> slot
        self._order: list[_Slot] = []         # admission order: prefills go first come, first served
        self._locked = False

    def free(self) -> int:
        return self.n_slots - len(self._slots)

    def active(self) -> bool:
        return bool(self._slots)

    def keys(self) -> list:
        return [s.key for s in self._order]

    def add(self, key, tokens: list[int], settings: SamplingSettings, *, probs: bool = False,
            cancel: threading.Event | None = None, candidates: int = 0) -> None:
        """Admit a run (its tokens checked as Engine.generate checks them)."""
        engine = self.engine
        settings = settings.validate()
        check_candidates(candidates, engine.lm.n_vocab)
        tokens = engine._check_tokens(list(tokens))
        if not self.free():
            raise BusyError(f"all {self.n_slots} parallel slots are busy")
        if not self._locked:
            if not engine._lock.acquire(blocking=False):
                raise BusyError("a generation is already running on this model")
            self._locked = True
        seq = min(set(range(self.n_slots)) - set(self._slots))
        try:
            engine.liveness.check()   # clearing the cache already talks to the servers
            engine.lm.clear_sequence(seq)
        except BaseException:
            self._release_if_idle()
            raise
        slot = _Slot(key, seq, tokens, settings, probs, candidates, cancel,
                     engine.prefill_spans(len(tokens), candidates))
        self._slots[seq] = slot
        self._order.append(slot)

    def step(self) -> list[tuple[object, object]]:
        """One prefill chunk (the oldest run still prefilling) and one decode step (every
        run with a sampled token): the events this made, per run key. A run whose decode
        failed gets its exception instead of an event and is over."""
        out: list[tuple[object, object]] = []
        for slot in list(self._order):
            if slot.cancel is not None and slot.cancel.is_set():
                self._end(slot, "cancelled", out)
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

    # ---------------------------------------------------------------------------------
    def _prefill_chunk(self, slot: _Slot, out: list) -> None:
        engine = self.engine
        s, e = slot.spans[0]
        t0 = time.perf_counter()
        try:
            slot.parts.append(engine._decode(slot.tokens[s:e], s, engine.prefill_all_outputs(slot.candidates),
                                             slot.probs, slot.candidates, slot.seq))
        except Exception as exc:   # noqa: BLE001 - the run fails, the others go on
            self._fail(slot, exc, out)
            return
        slot.prefill_s += time.perf_counter() - t0
        slot.spans.pop(0)
        if slot.spans:
            return
        routing = engine._postprocess(concat_routing(slot.parts))
        slot.parts = []
        out.append((slot.key, PromptRouted(engine.prompt_infos(slot.tokens), routing, slot.prefill_s)))
        slot.sampler = slot.settings.sampler()
        slot.stops = StopStrings(slot.settings.stop)
        self._next(slot, -1, out)

    def _decode_step(self, ready: list[_Slot], out: list) -> None:
        engine = self.engine
        t0 = time.perf_counter()
        try:
            r = engine._decode_rows([s.pending for s in ready], [s.n_past for s in ready], [s.seq for s in ready],
                                    any(s.probs for s in ready))
        except Exception as exc:   # noqa: BLE001 - every run in the step fails with it
            for slot in ready:
                self._fail(slot, exc, out)
            return
        logits = engine.logits(len(ready)) if any(s.candidates for s in ready) else None
        dt = time.perf_counter() - t0
        for row, slot in enumerate(ready):
            tok, pos = slot.pending, slot.n_past
            mine = BatchRouting(r.expert_ids[row:row + 1], r.weights[row:row + 1],
                                r.probs[row:row + 1] if slot.probs and r.probs is not None else None)
            if slot.candidates:
                engine.add_candidates(mine, logits[row:row + 1], slot.candidates)
            slot.pending = None
            slot.decode_s += dt
            slot.n_generated += 1
            text = slot.detok.push(engine.lm.piece(tok))
            out.append((slot.key, TokenRouted(pos, TokenInfo(tok, text, False), engine._postprocess(mine), dt)))
            if slot.stops.hit(text):
                self._end(slot, "stop", out)
            else:
                self._next(slot, row, out)   # sampled from this step's logits, fed in the next step

    def _next(self, slot: _Slot, row: int, out: list) -> None:
        """Engine.generate's loop head, at once: logits are only valid until the next decode."""
        engine = self.engine
        if slot.n_generated >= slot.settings.max_tokens:
            self._end(slot, "length", out)
        elif slot.cancel is not None and slot.cancel.is_set():
            self._end(slot, "cancelled", out)
        elif slot.n_past >= engine.lm.n_ctx_seq:
            self._end(slot, "context", out)
        else:
            tok = slot.sampler.sample(engine.lm.ctx, row)
            if engine.lm.is_eog(tok):
                self._end(slot, "eos", out)
            else:
                slot.pending = tok

    def _end(self, slot: _Slot, reason: str, out: list) -> None:
        # (cancelled while prefilling: nothing generated, as Engine.generate ends it)
        finish = Finished(reason, len(slot.tokens), slot.n_generated, slot.prefill_s, slot.decode_s)
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
            self.engine._lock.release()
