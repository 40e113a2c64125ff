"""A bounded on-disk store of recent runs, behind permalinks `/r/<id>`.

Ids are random (secrets), 16 URL-safe characters, checked against a strict pattern
before any path is built from them, so a link can name nothing but a stored run.
Every write is atomic; the oldest runs go when the count or byte limit is passed.
"""
from __future__ import annotations

import os
import re
import secrets
import threading
from pathlib import Path

from ..errors import NotFound
from .io import atomic_write, from_binary, to_binary
from .schema import Trace, TraceFormatError

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
SUFFIX = ".moetrace"


class RunNotFound(NotFound, LookupError):
    pass


class RunStore:
    def __init__(self, root: str | os.PathLike, max_runs: int = 500, max_bytes: int = 256 << 20):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunNotFound("no such run")
        return self.root / f"{run_id}{SUFFIX}"

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)          # 16 characters of [A-Za-z0-9_-]

    def save(self, trace: Trace, run_id: str | None = None) -> str:
        """Store `trace`; under `run_id` (from new_id(): a live run keeps the id its
        `start` message announced) unless that is taken, else under a fresh id."""
        data = to_binary(trace.validate())
        if len(data) > self.max_bytes:
            raise TraceFormatError(f"trace is {len(data)} bytes; this server keeps runs up to {self.max_bytes}")
        with self._lock:
            while run_id is None or self.path(run_id).exists():
                run_id = self.new_id()
            atomic_write(self.path(run_id), data)
            self._prune()
        return run_id

    def load_bytes(self, run_id: str) -> bytes:
        try:
            return self.path(run_id).read_bytes()
        except FileNotFoundError:
            raise RunNotFound("no such run") from None

    def load(self, run_id: str) -> Trace:
        return from_binary(self.load_bytes(run_id))

    def runs(self) -> list[tuple[str, int, float]]:
        """(id, bytes, mtime) of stored runs, newest first."""
        out = []
        for p in self.root.glob(f"*{SUFFIX}"):
            run_id = p.name[: -len(SUFFIX)]
            if RUN_ID.match(run_id):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append((run_id, st.st_size, st.st_mtime))
        return sorted(out, key=lambda r: -r[2])

    def _prune(self) -> None:
        total = 0
        for i, (run_id, size, _) in enumerate(self.runs()):
            total += size
            if i >= self.max_runs or total > self.max_bytes:
                try:
                    self.path(run_id).unlink()
                except FileNotFoundError:
                    pass
