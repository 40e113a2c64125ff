"""llama.cpp's log, routed through Python."""
from __future__ import annotations

import collections
import ctypes
import functools
import os
import sys
import threading

from .lib import llama_cpp


class LlamaLog:
    """Routes llama.cpp's log through Python: kept quiet, last lines remembered.

    llama.cpp explains a failed model load only in its log ("error loading model:
    ..."), so errors are built from the remembered lines. Set MOEVIZ_LLAMA_LOG=1 to
    see the whole log on stderr.
    """

    def __init__(self) -> None:
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=4096)
        self.echo = os.environ.get("MOEVIZ_LLAMA_LOG") == "1"
        self._partial = ""
        self.count = 0  # lines ever logged (the deque keeps only the last ones)
        # llama.cpp logs from any thread (a decode, ggml-rpc's dispatcher, a load): one
        # line's parts must not interleave, nor `since` read a half-updated count
        self._lock = threading.Lock()
        self._cfunc = llama_cpp().llama_log_callback(self._on_log)
        llama_cpp().llama_log_set(self._cfunc, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        msg = text.decode("utf-8", "replace")
        if self.echo:
            sys.stderr.write(msg)
        with self._lock:
            self._partial += msg
            while "\n" in self._partial:
                line, self._partial = self._partial.split("\n", 1)
                self.lines.append((level, line))
                self.count += 1

    def mark(self) -> int:
        """A position in the log; `since(mark)` gives the lines logged after it."""
        return self.count

    def since(self, mark: int) -> list[tuple[int, str]]:
        with self._lock:
            n = self.count - mark
            return list(self.lines)[-n:] if n > 0 else []

    def last_error(self, since: int = 0) -> str | None:
        """llama.cpp's explanation of a failure logged after `since` (a mark).

        It logs the cause first ("error loading model: unknown model architecture:
        'x'") and generic lines after ("failed to load model"): prefer the cause.
        """
        lines = [line for level, line in self.since(since)
                 if level == 3 or "error" in line.lower() or "failed" in line.lower()]
        for line in lines:
            if "error loading model:" in line:
                return line.split("error loading model:", 1)[1].strip()
        if not lines:
            return None
        line = lines[0]
        return line.split(": ", 1)[1].strip() if ": " in line else line.strip()


@functools.cache
def llama_log() -> LlamaLog:
    return LlamaLog()
