"""The live websocket's protocol (docs/protocol.md), apart from any transport.

`LiveSession` is one page's connection: `handle(raw)` takes one client message and
answers through `send(text, t_event)` (thread-safe: the generation worker calls it too);
`close()` is the connection's end (its run cancelled, its watch dropped). It knows the
worker, the live list and the limits, not FastAPI: tests drive it directly, and
routes/socket.py carries it over a websocket.
"""
from __future__ import annotations

from typing import Callable

from ..trace.messages import error_message
from .errors import client_message
from .live import LiveRuns, Viewer
from .requests import RequestError, generate_request, parse_message
from .worker import GenerationWorker, Job, dumps

Send = Callable[[str, float], None]     # (json text, perf_counter when its event was made; 0 for none)


class LiveSession:
    def __init__(self, *, worker: GenerationWorker, live_runs: LiveRuns, prompts: dict, max_tokens: int,
                 max_message_bytes: int, send: Send, limiter=None, client: str = "?", run_defaults: dict | None = None):
        self.worker, self.live_runs, self.prompts = worker, live_runs, prompts
        self.run_defaults = run_defaults or {}     # serve --temperature ...: for settings a message leaves out
        self.max_tokens, self.max_message_bytes = max_tokens, max_message_bytes
        self.limiter, self.client = limiter, client
        self.send = send
        self.viewer = Viewer(lambda text: send(text, 0.0))
        self.job: Job | None = None
        self.handlers = {"generate": self.generate, "runs": self.runs, "watch": self.watch,
                         "unwatch": self.unwatch, "cancel": self.cancel}

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done.is_set()

    @property
    def idle(self) -> bool:
        """Nothing running and nothing watched (public mode closes such connections after a while)."""
        return not self.running and self.viewer.watching is None

    def handle(self, raw: str | bytes) -> None:
        """One client message; a bad one is answered with one `error` message, and the
        connection stays usable."""
        try:
            msg = parse_message(raw, self.max_message_bytes)
            handler = self.handlers.get(msg["type"])
            if handler is None:
                raise RequestError(f"unknown message type {msg['type'][:40]!r}")
            handler(msg)
        except Exception as e:   # a MoevizError's line; a bug is logged, the client gets a generic line
            self.send(dumps(error_message(client_message(e))), 0.0)

    def close(self) -> None:
        self.live_runs.unsubscribe(self.viewer)
        if self.job is not None:
            self.worker.cancel(self.job)   # a client that leaves cancels its run

    # Messages -----------------------------------------------------------------------------
    def generate(self, msg: dict) -> None:
        if self.running:
            raise RequestError("a generation is already running on this connection; send cancel or wait for done")
        req = generate_request(msg, self.prompts, self.max_tokens, self.run_defaults)
        if self.limiter is not None:
            self.limiter.check(self.client)
        self.live_runs.unwatch(self.viewer)
        self.job = Job(req, self.send, owner=self.viewer)
        self.worker.submit(self.job)

    def runs(self, _msg: dict) -> None:
        self.live_runs.subscribe(self.viewer)

    def watch(self, msg: dict) -> None:
        if self.running:
            raise RequestError("this connection's own run is in progress; cancel it or wait for done")
        self.live_runs.watch(self.viewer, msg.get("run"))

    def unwatch(self, _msg: dict) -> None:
        self.live_runs.unwatch(self.viewer)

    def cancel(self, _msg: dict) -> None:
        if self.job is not None:
            self.worker.cancel(self.job)
