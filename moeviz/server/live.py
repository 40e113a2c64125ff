"""Runs in flight and recently finished, from any source (the page, the OpenAI API):
listed to every page, and watchable token by token (docs/protocol.md, "Watching runs").

The generation worker reports each run here (`queued`, `started`, every message it
sends, `ended`). A viewer (one page's websocket) subscribes to the list and may watch one
run: it then gets that run's messages so far (start, prompt, tokens) and every later one,
exactly as the run's own client gets them, so the page shows it with all its views.

Privacy (docs/public-mode.md): on a normal server every viewer sees every run. With
`--public` a viewer sees only its own runs, plus the OpenAI API's runs where the server
opts in with `--show-api-runs`; other visitors' page runs are never listed or watchable.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from typing import Callable

from .requests import RequestError

RECENT = 20          # finished runs kept in the list (their permalinks replay them)
TITLE_CHARS = 80


class NoSuchLiveRun(RequestError, LookupError):
    pass


class Viewer:
    """One page's connection: `send(text)` must be safe to call from any thread."""

    def __init__(self, send: Callable[[str], None]):
        self.send = send
        self.watching: str | None = None


@dataclasses.dataclass(eq=False)
class _Entry:
    run: str
    source: str
    title: str
    owner: object
    queued_at: float
    status: str = "queued"                 # queued | running | done | error | cancelled
    permalink: str | None = None
    n_tokens: int = 0
    messages: list = dataclasses.field(default_factory=list)   # while in flight: every message sent so far
    watchers: set = dataclasses.field(default_factory=set)

    def to_json(self) -> dict:
        return {"run": self.run, "source": self.source, "title": self.title, "status": self.status,
                "queued_at": round(self.queued_at, 3), "permalink": self.permalink}


def run_title(request, default_k: int | None = None) -> str:
    """What the list calls a run: a library prompt's title, else its opening words, then
    what the run changed (web/js/runname.js whatDiffers says it the same way), so that
    several what-if runs of one prompt can be told apart in another page's Compare list."""
    return " · ".join([_base_title(request), *what_differs(request, default_k)])


def what_differs(request, default_k: int | None = None) -> list[str]:
    """"2 experts per token" (a top-k other than the server's), "3 experts masked"."""
    out = []
    k = getattr(request, "experts_per_token", None)
    if isinstance(k, int) and not isinstance(k, bool) and k != default_k:
        out.append(f"{k} expert{'' if k == 1 else 's'} per token")
    mask = getattr(request, "mask", None)
    n = len(mask) if isinstance(mask, list) else len([p for p in mask.split(",") if p.strip()]) \
        if isinstance(mask, str) else 0
    if n:
        out.append(f"{n} expert{'' if n == 1 else 's'} masked")
    return out


def _base_title(request) -> str:
    title = getattr(request, "prompt_title", None) or getattr(request, "prompt_name", None)
    if not title:
        prompt = request.prompt
        if isinstance(prompt, str):
            title = prompt
        else:
            users = [m["content"] for m in prompt if m.get("role") == "user"] or [m["content"] for m in prompt]
            title = users[-1] if users else ""
    title = " ".join(str(title).split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


class LiveRuns:
    def __init__(self, *, public: bool = False, show_api_runs: bool = False, recent: int = RECENT,
                 default_k: int | None = None):
        self.public = public
        self.default_k = default_k        # the server's experts per token: a run asking for it changes nothing
        self.show_api_runs = show_api_runs
        self.recent = recent
        self._runs: "collections.OrderedDict[str, _Entry]" = collections.OrderedDict()
        self._viewers: set[Viewer] = set()
        self._lock = threading.RLock()

    # Who sees what ----------------------------------------------------------------------
    def visible(self, entry: _Entry, viewer: Viewer | None) -> bool:
        if not self.public:
            return True
        if viewer is not None and entry.owner is viewer:
            return True
        return entry.source == "api" and self.show_api_runs

    def listing(self, viewer: Viewer | None = None) -> list[dict]:
        """Visible runs, newest first."""
        with self._lock:
            return [e.to_json() for e in reversed(self._runs.values()) if self.visible(e, viewer)]

    # The worker's reports ---------------------------------------------------------------
    def queued(self, job) -> None:
        with self._lock:
            self._runs[job.run_id] = _Entry(job.run_id, job.source, run_title(job.request, self.default_k), job.owner,
                                           time.time())
            self._broadcast()

    def started(self, job) -> None:
        with self._lock:
            e = self._runs.get(job.run_id)
            if e is not None:
                e.status = "running"
                self._broadcast()

    def message(self, job, text: str) -> None:
        """A message the run's client was sent: kept for late watchers while the run is
        in flight, passed to its watchers (the last one, `done` or `error`, too)."""
        with self._lock:
            e = self._runs.get(job.run_id)
            if e is None or text.startswith('{"type":"queued"'):   # the run's own place in the queue
                return
            if e.status == "running":
                e.messages.append(text)
            for v in e.watchers:
                v.send(text)

    def ended(self, job, status: str, permalink: str | None) -> None:
        """The run's outcome, listed at once (before its last message goes out)."""
        with self._lock:
            e = self._runs.get(job.run_id)
            if e is None or e.status not in ("queued", "running"):
                return
            e.status, e.permalink, e.messages = status, permalink, []
            self._broadcast()

    def closed(self, job, status: str, permalink: str | None) -> None:
        """The run is over (its last message sent): watchers let go, old runs dropped."""
        with self._lock:
            self.ended(job, status, permalink)
            e = self._runs.get(job.run_id)
            if e is None:
                return
            for v in e.watchers:
                v.watching = None
            e.watchers = set()
            finished = [r for r, x in self._runs.items() if x.status not in ("queued", "running")]
            for r in finished[: max(0, len(finished) - self.recent)]:
                del self._runs[r]

    # Viewers ----------------------------------------------------------------------------
    def subscribe(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.add(viewer)
            viewer.send(_dumps({"type": "runs", "runs": self.listing(viewer)}))

    def unsubscribe(self, viewer: Viewer) -> None:
        with self._lock:
            self.unwatch(viewer, quiet=True)
            self._viewers.discard(viewer)

    def watch(self, viewer: Viewer, run_id) -> None:
        """Send `watching`, the run's messages so far, then every later one."""
        with self._lock:
            e = self._runs.get(run_id) if isinstance(run_id, str) else None
            if e is None or not self.visible(e, viewer):
                raise NoSuchLiveRun(f"no live run {str(run_id)[:40]!r}")
            if e.status not in ("queued", "running"):
                where = f": replay it at {e.permalink}" if e.permalink else ""
                raise NoSuchLiveRun(f"run {run_id} has finished{where}")
            self.unwatch(viewer, quiet=True)
            viewer.watching = run_id
            e.watchers.add(viewer)
            viewer.send(_dumps({"type": "watching", "run": run_id}))
            for text in e.messages:
                viewer.send(text)

    def unwatch(self, viewer: Viewer, quiet: bool = False) -> None:
        with self._lock:
            if viewer.watching is not None:
                e = self._runs.get(viewer.watching)
                if e is not None:
                    e.watchers.discard(viewer)
                viewer.watching = None
                if not quiet:
                    viewer.send(_dumps({"type": "watching", "run": None}))

    def _broadcast(self) -> None:
        for v in self._viewers:
            v.send(_dumps({"type": "runs", "runs": self.listing(v)}))


def _dumps(msg: dict) -> str:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))
