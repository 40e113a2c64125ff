"""Cached reads of stored runs, for the permalink pages and the trace's head.

A stored run never changes: its file is opened once (memory-mapped, not checked again)
for the permalink page's title and description and for the head a page draws first;
its preview image is drawn once. Cached by id and file version (mtime).
"""
from __future__ import annotations

import functools

from ..preview import render_png, run_description, run_title
from ..trace.partial import head_bytes, open_stored, trace_of
from ..trace.store import RunNotFound, RunStore


class StoredRuns:
    def __init__(self, store: RunStore):
        self.store = store
        self._stored = functools.lru_cache(maxsize=4)(self._open)
        self._page_text = functools.lru_cache(maxsize=64)(self._text)
        self._head = functools.lru_cache(maxsize=8)(self._head_of)
        self.preview_png = functools.lru_cache(maxsize=64)(self._png)

    def version(self, run_id: str) -> int:
        try:
            return self.store.path(run_id).stat().st_mtime_ns    # RunNotFound for anything but a well-formed id
        except FileNotFoundError:
            raise RunNotFound("no such run") from None

    def page_text(self, run_id: str) -> tuple[str, str, dict]:
        """(title, description, model) of a stored run; RunNotFound when there is none."""
        return self._page_text(run_id, self.version(run_id))

    def head(self, run_id: str, n: int) -> bytes | None:
        """The run's first n tokens as a .moetrace marked partial; None when the run is not longer."""
        return self._head(run_id, n, self.version(run_id))

    def _open(self, run_id: str, _version: int):
        return open_stored(self.store.path(run_id))

    def _text(self, run_id: str, v: int) -> tuple[str, str, dict]:
        trace = trace_of(*self._stored(run_id, v))
        return run_title(trace), run_description(trace), trace.model

    def _head_of(self, run_id: str, n: int, v: int) -> bytes | None:
        return head_bytes(*self._stored(run_id, v), n)

    def _png(self, run_id: str) -> bytes:
        return render_png(self.store.load(run_id))
