"""The generation worker: one thread owns the engine; runs are queued in arrival order.

Generation blocks (llama.cpp decodes), so it never runs on the event loop. Each job
carries a thread-safe `send(text, t_event)` into its client's websocket queue and a
cancel event that the client's disconnect sets.

One loop drives the engine's slot scheduler (engine/slots.py): one slot for a plain
serve, N for serve --parallel N. Jobs are admitted in arrival order into free slots; a
job that asks for other interventions (top-k, masks: one state for the whole context)
waits until the running ones are done, and the jobs behind it wait with it.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
import time
from typing import Callable

from ..engine import Finished, TokenRouted
from ..engine.text import PromptError
from ..engine.slots import Run, Scheduler
from ..record import Named, Recording, current_interventions, wanted_interventions
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
    # Jobs queued together by submit_group (the `n` choices of one request) share this:
    # they start together, each its own slot, when as many slots are free.
    group: object = None


class GenerationWorker:
    def __init__(self, engine, max_prompt_tokens: int, store=None, live=None, metrics=None):
        self.engine = engine
        self.metrics = metrics      # a metrics.ServerMetrics: counters updated once per finished run
        self.max_prompt_tokens = max_prompt_tokens
        self.store = store          # a RunStore: finished runs get a permalink
        self.live = live            # a live.LiveRuns: runs in flight, watchable from any page
        self.parallel = max(1, int(getattr(engine, "parallel", 1)))
        self._queue: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self.running: list[Job] = []   # jobs generating now (at most `parallel`)
        self._thread = threading.Thread(target=self._loop, name="moeviz-generation", daemon=True)
        self._thread.start()

    # Called from the event loop ---------------------------------------------------------
    def _busy(self) -> int:
        """Slots held: a run that has sent its `done` holds none."""
        return sum(not j.done.is_set() for j in list(self.running))

    def _ahead(self) -> int:
        """Runs between a newly queued job and a free slot (call with the lock held)."""
        # the newest job is number len(queue) in line; the first (parallel - busy) take free slots
        return max(0, len(self._queue) + self._busy() - self.parallel)

    def submit(self, job: Job) -> int:
        """Queue a job; returns how many runs are ahead of it."""
        if self.live is not None:
            self.live.queued(job)
        with self._cv:
            self._queue.append(job)
            ahead = self._ahead()
            self._cv.notify()
        if ahead:
            job.send(dumps(queued_message(ahead)), 0.0)
        return ahead

    def submit_group(self, jobs: list[Job]) -> int:
        """Queue several jobs that start together (one request's `n` choices: same prompt,
        each its own sequence and seed), as llama.cpp's server launches a task's children;
        returns how many runs are ahead of them. More jobs than slots: each is queued on
        its own (they then run as slots free up)."""
        if len(jobs) <= 1 or len(jobs) > self.parallel:
            aheads = [self.submit(job) for job in jobs]
            return aheads[0] if aheads else 0
        group = object()
        for job in jobs:
            job.group = group
            if self.live is not None:
                self.live.queued(job)
        with self._cv:
            self._queue.extend(jobs)
            ahead = self._ahead()
            self._cv.notify()
        if ahead:
            for job in jobs:
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
                if self.metrics is not None:   # it ended with `done` too: it counts
                    self.metrics.run_ended(job.source, "cancelled")
                self._announce_positions()
                if self.live is not None:
                    self.live.closed(job, "cancelled", None)

    def load(self) -> tuple[int, int]:
        """(runs generating now, runs waiting in the queue): /metrics' request gauges."""
        return self._busy(), len(self._queue)

    @property
    def queue_length(self) -> int:
        return len(self._queue) + len(self.running)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            for job in self._queue:
                job.cancel.set()
            for job in self.running:
                job.cancel.set()
            self._cv.notify()
        self._thread.join(timeout=10)

    # The worker thread ------------------------------------------------------------------
    def _announce_positions(self) -> None:
        """Tell waiting clients their new place (call with the lock held)."""
        for i, job in enumerate(self._queue):
            job.send(dumps(queued_message(i + 1)), 0.0)

    def _loop(self) -> None:
        """The one loop: admit queued jobs into free slots, one scheduler step, deliver its
        events; a plain serve is one slot, serve --parallel N is N."""
        slots = Scheduler(self.engine)   # its runs are keyed by their sessions
        while True:
            with self._cv:
                while not self._queue and not slots.active() and not self._stopping:
                    self._cv.wait()
                stopping = self._stopping
                admit = [] if stopping else self._admissible(slots)
                if admit:
                    self.running += admit
                    self._announce_positions()
            if stopping:   # the running runs end as cancelled ones do, each with its `done`
                self._deliver(slots.cancel_all())
                return
            for group in _groups(admit):
                self._start(group, slots)
            if slots.active():
                self._deliver(slots.step())
            if not slots.active() and not self._queue:
                release_memory()   # nothing running or waiting: hand the runs' freed memory back (a few ms)

    def _start(self, jobs: list[Job], slots: Scheduler) -> None:
        """Start admitted jobs (a job alone, or a group together) in their slots."""
        started = []
        for job in jobs:
            session = RunSession(self, job)
            try:
                rec = session.start()
                started.append((session, Run(rec.tokens, rec.sampling, probs=rec.probs, cancel=job.cancel,
                                             candidates=rec.candidates)))
            except Exception as e:  # noqa: BLE001 - a bad run must never take the worker down
                session.fail(e)
                self._retire(session)
        try:
            slots.add_group(started)
        except Exception as e:  # noqa: BLE001
            for session, _ in started:
                session.fail(e)
                self._retire(session)

    def _admissible(self, slots: Scheduler) -> list[Job]:
        """The queued jobs that start now, in arrival order (call with the lock held): as
        many as there are free slots, while they ask for the routers' state the running
        runs use (top-k and masks are one state for the whole context). A job that asks
        for another waits for the running ones, and the jobs behind it wait with it."""
        admit: list[Job] = []
        state = current_interventions(self.engine) if slots.active() else None
        while self._queue and slots.free() - len(admit) > 0:
            head = self._queue[0]
            members = 1 if head.group is None else sum(1 for _ in itertools.takewhile(
                lambda j: j.group is head.group, self._queue))
            if members > slots.free() - len(admit):
                break   # a group starts together: it waits for as many free slots
            try:
                want = wanted_interventions(self.engine, head.request.experts_per_token, head.request.mask)
            except Exception:   # noqa: BLE001 - refused by its session's start
                want = None
            if want is not None and state is not None and want != state:
                break
            state = want if want is not None else state
            admit += [self._queue.popleft() for _ in range(members)]
        return admit

    def _deliver(self, events: list) -> None:
        """A step's events to their runs' sessions; a run that ended (or failed) retires."""
        for session, ev in events:
            try:
                if isinstance(ev, BaseException):
                    raise ev
                session.rec.add(ev)
                session.event(ev)
            except Exception as e:  # noqa: BLE001 - that run fails, the others go on
                session.fail(e)
                ev = None
            if ev is None or isinstance(ev, Finished):
                self._retire(session)

    def _retire(self, session: "RunSession") -> None:
        with self._cv:
            if session.job in self.running:
                self.running.remove(session.job)
        session.close()

    def _cancelled_message(self, job: Job) -> dict:
        info = self.engine.info
        finish = Finished("cancelled", 0, 0, 0.0, 0.0)
        msg = event_message(finish)
        msg["summary"] = ExpertCounter(len(info.moe_layers), info.n_expert).summary()
        return msg

    def finish_message(self, trace, run_id: str, store: bool = True) -> dict:
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


class RunSession:
    """One job's run as the worker drives it: started (the prompt tokenized and checked,
    `start` sent), fed the engine's events (each sent, `done` with its permalink), failed
    (one error line) and closed. The same for a run alone and a run in a parallel batch."""

    def __init__(self, worker: GenerationWorker, job: Job):
        self.worker, self.job = worker, job
        self.rec: Recording | None = None
        self.status, self.permalink = "error", None

    def emit(self, msg: dict, t_event: float) -> None:
        text = dumps(msg)
        self.job.send(text, t_event)
        if self.worker.live is not None:
            self.worker.live.message(self.job, text)

    def start(self) -> Recording:
        job, req, worker = self.job, self.job.request, self.worker
        named = Named(req.prompt_name, req.prompt_title, req.prompt_domain) if req.prompt_name is not None else None
        rec = Recording(worker.engine, req.prompt, req.settings, probs=req.probs, named=named,
                        experts_per_token=req.experts_per_token, mask=req.mask, candidates=req.candidates)
        if worker.max_prompt_tokens is not None and len(rec.tokens) > worker.max_prompt_tokens:   # None: no cap
            raise PromptError(f"the prompt is {len(rec.tokens)} tokens; this server's limit is {worker.max_prompt_tokens}")
        if worker.live is not None:
            worker.live.started(job)
        self.emit(start_message(job.run_id, req.prompt, rec.settings), 0.0)   # not a token: no latency entry
        self.rec = rec
        return rec

    def event(self, ev) -> None:
        job, worker, live = self.job, self.worker, self.worker.live
        t_event = time.perf_counter()
        msg = event_message(ev)
        if isinstance(ev, Finished):
            trace = self.rec.trace()
            msg.update(worker.finish_message(trace, job.run_id, job.store))
            if worker.metrics is not None:   # once per run, before `done` goes out
                worker.metrics.run_finished(trace, job.source)
            self.status = "cancelled" if ev.reason == "cancelled" else "done"
            self.permalink = msg.get("permalink")
            if live is not None:     # the list first: the run's own `done` stays its last message
                live.ended(job, self.status, self.permalink)
        if job.on_event is not None:
            job.on_event(ev, msg)
        if isinstance(ev, Finished):
            # finished before `done` goes out: a client's next `generate`, sent the
            # moment `done` arrives, must find this run over
            job.done.set()
        self.emit(msg, t_event if isinstance(ev, TokenRouted) else 0.0)

    def fail(self, e: Exception) -> None:
        job, worker = self.job, self.worker
        msg = error_message(client_message(e))
        job.done.set()   # as for `done`: over before the client hears so
        self.status = "error"
        if worker.metrics is not None:
            worker.metrics.run_failed(job.source)
        if job.on_event is not None:
            job.on_event(None, {**msg, "status": client_status(e)})
        if worker.live is not None:
            worker.live.ended(job, "error", None)
        self.emit(msg, 0.0)

    def close(self) -> None:
        self.job.done.set()
        if self.worker.live is not None:
            self.worker.live.closed(self.job, self.status, self.permalink)


def _groups(jobs: list[Job]) -> list[list[Job]]:
    """Admitted jobs as they start: each alone, a group's members together."""
    out: list[list[Job]] = []
    for job in jobs:
        if out and job.group is not None and out[-1][0].group is job.group:
            out[-1].append(job)
        else:
            out.append([job])
    return out
