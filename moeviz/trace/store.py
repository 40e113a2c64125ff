"""A bounded on-disk store of recent runs, behind permalinks `/r/<id>`.

Ids are random (secrets), 16 URL-safe characters, checked against a strict pattern
before any path is built from them, so a link can name nothing but a stored run.
Every write is atomic; the oldest runs go when the count or byte limit is passed.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import NotFound, Unavailable
from .io import atomic_write, from_binary, to_binary
from .schema import Trace, TraceFormatError

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
SUFFIX = ".moetrace"


class RunNotFound(NotFound, LookupError):
    pass


class StoreUnavailable(Unavailable):
    """The data folder cannot take a run: read-only, full, not a folder. The message
    names the reason (and the folder only where the operator reads it: `check`)."""


# Free space the data folder needs at start: room for a few runs.
MIN_FREE_BYTES = 4 << 20


def check_data_dir(root: str | os.PathLike) -> None:
    """Create the data folder and prove it takes a file (written, synced, removed) and has
    MIN_FREE_BYTES free; a StoreUnavailable naming the folder and the reason otherwise."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".moeviz-write-check-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(probe, "wb") as f:
                f.write(b"moeviz")
                f.flush()
                os.fsync(f.fileno())
        finally:
            try:
                probe.unlink()
            except FileNotFoundError:
                pass
        st = os.statvfs(root)
    except OSError as e:
        raise StoreUnavailable(f"the data folder {root} cannot be written: {e.strerror or e}") from None
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise StoreUnavailable(f"the data folder {root} is full ({free >> 10} KiB free; runs need at least "
                               f"{MIN_FREE_BYTES >> 20} MiB)")


_upload_lock = threading.Lock()
UPLOAD_PARSE_TIMEOUT_S = 120


class RunStore:
    def __init__(self, root: str | os.PathLike, max_runs: int = 500, max_bytes: int = 256 << 20):
        self.root = Path(root)
        check_data_dir(self.root)
        self._remove_stale_writes()
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _remove_stale_writes(self, older_than_s: float = 60.0) -> None:
        """Temporary files of writes a crash (kill -9, power loss) interrupted: never a run
        (atomic_write renames only a whole file into place), removed at start."""
        now = time.time()
        for p in self.root.glob(f".*{SUFFIX}.*.tmp"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
            except OSError:
                pass

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
            try:
                atomic_write(self.path(run_id), data)   # all or nothing: a failed write leaves no file
            except OSError as e:   # the folder went read-only or full since the start: say so, no path
                raise StoreUnavailable(f"this server cannot store runs now: {e.strerror or type(e).__name__}") from None
            self._prune()
        return run_id

    def save_upload(self, body: bytes) -> str:
        """Parse an uploaded trace (either form) and store it, in a child process: a 32 MiB
        JSON trace takes seconds of C parsing that holds the GIL (every thread of this
        process, the event loop's too, would wait) and builds Python objects several times
        its size, which die with the child. One upload at a time."""
        import moeviz  # noqa: PLC0415

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(moeviz.__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
        cmd = [sys.executable, "-m", "moeviz.trace.store", str(self.root), str(self.max_runs), str(self.max_bytes)]
        with _upload_lock:
            r = None
            try:
                r = subprocess.run(cmd, input=body, capture_output=True, env=env, timeout=UPLOAD_PARSE_TIMEOUT_S)
                answer = json.loads(r.stdout)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                answer = {}
                if r is not None and r.stderr:   # the child's own failure: for the server's log only
                    logging.getLogger("moeviz.server").error("upload parser failed: %s",
                                                             r.stderr.decode("utf-8", "replace")[-2000:])
        if "id" in answer:
            return answer["id"]
        if "error" in answer:
            raise (TraceFormatError if answer.get("status") == 400 else StoreUnavailable)(answer["error"])
        raise StoreUnavailable("the upload could not be parsed (its parser failed or ran out of time)")

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


def _upload_child(root: str, max_runs: int, max_bytes: int) -> None:
    """`python -m moeviz.trace.store ROOT MAX_RUNS MAX_BYTES`, a trace on stdin: store it,
    print {"id"} or {"error", "status"} (RunStore.save_upload's child)."""
    from ..errors import MoevizError  # noqa: PLC0415
    from .io import loads  # noqa: PLC0415

    store = RunStore.__new__(RunStore)     # the server checked the folder at its start
    store.root, store.max_runs, store.max_bytes, store._lock = Path(root), max_runs, max_bytes, threading.Lock()
    try:
        answer = {"id": store.save(loads(sys.stdin.buffer.read()))}
    except MoevizError as e:
        answer = {"error": e.one_line(), "status": e.status}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _upload_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
