"""The generation worker: one thread owns the engine; runs are queued in arrival order.

Generation blocks (llama.cpp decodes), so it never runs on the event loop. Each job
carries a thread-safe `send(text, t_event)` into its client's websocket queue and a
cancel event that the client's disconnect sets.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from typing import Callable

from ..engine import Finished, TokenRouted
from ..engine.text import PromptError
from ..record import Named, Recording
from ..errors import MoevizError
from ..trace.messages import error_message, event_message, queued_message, start_message
from ..trace import TraceFormatError
from ..trace.store import RunStore
from ..trace.summary import ExpertCounter
from .errors import client_message, client_status
from .limits import release_memory
from .requests import GenerateRequest


def dumps(msg: dict) -> str:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


@dataclasses.dataclass(eq=False)
class Job:
    request: GenerateRequest
    send: Callable[[str, float], None]        # (json text, perf_counter when the event was made)
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    run_id: str = dataclasses.field(default_factory=RunStore.new_id)   # also its permalink id
    source: str = "page"                      # "page" (a websocket) or "api" (the OpenAI API): live.py lists both
    owner: object = None                      # who asked (the page's connection): it always sees its own run
    store: bool = True                        # False: no permalink (`serve --no-store-api`)
    # Called on the worker thread with each engine event and the message made of it
    # (the `done` message with its permalink), and (None, error message) when the run
    # fails: the OpenAI API builds its answers from these.
    on_event: Callable[[object, dict], None] | None = None


class GenerationWorker:
    def __init__(self, engine, max_prompt_tokens: int, store=None, live=None, metrics=None):
        self.engine = engine
        self.metrics = metrics      # a metrics.ServerMetrics: counters updated once per finished run
        self.max_prompt_tokens = max_prompt_tokens
        self.store = store          # a RunStore: finished runs get a permalink
        self.live = live            # a live.LiveRuns: runs in flight, watchable from any page
        self._queue: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._loop, name="moeviz-generation", daemon=True)
        self._thread.start()

    # Called from the event loop ---------------------------------------------------------
    def submit(self, job: Job) -> int:
        """Queue a job; returns how many runs are ahead of it."""
        if self.live is not None:
            self.live.queued(job)
        with self._cv:
            self._queue.append(job)
            # a current run that has sent its `done` is no longer ahead of anyone
            ahead = len(self._queue) - 1 + (self.current is not None and not self.current.done.is_set())
            self._cv.notify()
        if ahead:
            job.send(dumps(queued_message(ahead)), 0.0)
        return ahead

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        with self._cv:
            if job in self._queue:
                self._queue.remove(job)
                job.done.set()
                # a run cancelled before it started still ends, with `done` (reason cancelled)
                job.send(dumps(self._cancelled_message(job)), 0.0)
                self._announce_positions()
                if self.live is not None:
                    self.live.closed(job, "cancelled", None)

    def load(self) -> tuple[int, int]:
        """(runs generating now, runs waiting in the queue): /metrics' request gauges."""
        current = self.current
        return int(current is not None and not current.done.is_set()), len(self._queue)

    @property
    def queue_length(self) -> int:
        return len(self._queue) + (self.current is not None)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            for job in self._queue:
                job.cancel.set()
            if self.current:
                self.current.cancel.set()
            self._cv.notify()
        self._thread.join(timeout=10)

    # The worker thread ------------------------------------------------------------------
    def _announce_positions(self) -> None:
        """Tell waiting clients their new place (call with the lock held)."""
        for i, job in enumerate(self._queue):
            job.send(dumps(queued_message(i + 1)), 0.0)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self.current = job
                self._announce_positions()
            try:
                self._run(job)
            finally:
                with self._cv:
                    self.current = None
                    idle = not self._queue
                job.done.set()
            if idle:   # nothing waiting: hand the run's freed memory back (a few ms)
                release_memory()

    def _cancelled_message(self, job: Job) -> dict:
        info = self.engine.info
        finish = Finished("cancelled", 0, 0, 0.0, 0.0)
        msg = event_message(finish)
        msg["summary"] = ExpertCounter(len(info.moe_layers), info.n_expert).summary()
        return msg

    def _finish(self, trace, run_id: str, store: bool = True) -> dict:
        """What `done` adds for a finished run: its summary, counted once from the trace,
        and its permalink — or, when the store refuses the trace (over its size limit),
        why there is none: the run itself still ends with `done`."""
        counter = ExpertCounter(len(trace.model["moe_layers"]), trace.model["n_expert"])
        counter.add(trace.expert_ids)
        out = {"summary": counter.summary()}
        if self.store is not None and store:
            try:
                out["permalink"] = "/r/" + self.store.save(trace, run_id)
            except (MoevizError, OSError) as e:   # too big, or a read-only / full data folder
                out["permalink_error"] = client_message(e)
        return out

    def _run(self, job: Job) -> None:
        req = job.request
        live = self.live

        def emit(msg: dict, t_event: float) -> None:
            text = dumps(msg)
            job.send(text, t_event)
            if live is not None:
                live.message(job, text)

        status, permalink = "error", None
        try:
            named = Named(req.prompt_name, req.prompt_title, req.prompt_domain) if req.prompt_name is not None else None
            rec = Recording(self.engine, req.prompt, req.settings, probs=req.probs, named=named,
                            experts_per_token=req.experts_per_token, mask=req.mask, candidates=req.candidates)
            if len(rec.tokens) > self.max_prompt_tokens:
                raise PromptError(f"the prompt is {len(rec.tokens)} tokens; this server's limit is {self.max_prompt_tokens}")
            if live is not None:
                live.started(job)
            emit(start_message(job.run_id, req.prompt, rec.settings), 0.0)   # not a token: no latency entry
            for ev in rec.events(job.cancel):
                t_event = time.perf_counter()
                msg = event_message(ev)
                if isinstance(ev, Finished):
                    trace = rec.trace()
                    msg.update(self._finish(trace, job.run_id, job.store))
                    if self.metrics is not None:   # once per run, before `done` goes out
                        self.metrics.run_finished(trace, job.source)
                    status = "cancelled" if ev.reason == "cancelled" else "done"
                    permalink = msg.get("permalink")
                    if live is not None:     # the list first: the run's own `done` stays its last message
                        live.ended(job, status, permalink)
                if job.on_event is not None:
                    job.on_event(ev, msg)
                if isinstance(ev, Finished):
                    # finished before `done` goes out: a client's next `generate`, sent the
                    # moment `done` arrives, must find this run over
                    job.done.set()
                emit(msg, t_event if isinstance(ev, TokenRouted) else 0.0)
        except Exception as e:  # a bad run must never take the worker down
            msg = error_message(client_message(e))
            job.done.set()   # as for `done`: over before the client hears so
            if self.metrics is not None:
                self.metrics.run_failed(job.source)
            if job.on_event is not None:
                job.on_event(None, {**msg, "status": client_status(e)})
            if live is not None:
                live.ended(job, "error", None)
            emit(msg, 0.0)
        finally:
            if live is not None:
                live.closed(job, status, permalink)
