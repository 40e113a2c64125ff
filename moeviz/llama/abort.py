"""Surviving llama.cpp's aborts while it reads a model file.

A GGUF with inconsistent metadata (a corrupted or hand-made file) can fail one of
llama.cpp's GGML_ASSERTs while the model loads or its context is built
(`deepseek2.cpp: GGML_ASSERT(n_embd_head_qk_nope >= 1)`, `llama-vocab.cpp:
GGML_ASSERT(id_to_token.size() == token_to_id.size())` for a vocabulary with a token
twice, ...), and ggml_abort then calls abort(): the whole process dies, a server with
every client. moeviz validates what it can before llama.cpp sees a file (gguf_info), but
llama.cpp's checks are spread over every architecture's loader; so those calls run on a
guarded thread (`run_guarded`). ggml's abort callback, called before abort(), parks
that thread for good (it never returns, so abort() is never reached) and the caller gets
a `LlamaAborted` with the assert's one line. The parked thread's memory is lost; the
process, and every other thread, live on. An abort on any other thread keeps ggml's
behaviour (the callback that was installed before, if any, then abort()), except that
its text is always written to stderr first: with a callback installed ggml prints
nothing itself, and a process that died on an assert said nothing in its log.
Aborts that name a known, survivable cause (`park_on`: ggml-rpc's lost server in a
build without moeviz's soft-failure patch) park their thread on any thread.

ggml holds one abort callback per process: this module is its only owner.
"""
from __future__ import annotations

import ctypes
import os
import threading

from ..errors import UserError
from .lib import linked_library_path

_ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


class LlamaAborted(UserError, RuntimeError):
    """llama.cpp asserted while reading a file: the file is refused, the process lives."""


_lock = threading.Lock()
_guarded: dict[int, dict] = {}      # thread id -> {"event", "message"}
_callback = None                    # ours (kept alive: ggml holds only the pointer)
_previous = None                    # the callback installed before ours, chained to
_parkers: list[tuple[tuple[str, ...], object]] = []   # (markers, notice(text)): see park_on


def _park() -> None:
    threading.Event().wait()   # never return: ggml_abort would call abort() next


def _write_stderr(line: str) -> None:
    # os.write, not sys.stderr: the process is about to die, nothing buffered survives
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass


def _on_abort(message: bytes) -> None:
    text = (message or b"").decode("utf-8", "replace").strip()
    slot = _guarded.get(threading.get_ident())
    if slot is not None:
        slot["message"] = text
        slot["event"].set()
        _park()
    for markers, notice in list(_parkers):
        if any(m in text for m in markers):
            try:
                notice(text)
            finally:
                _park()
    _write_stderr(f"moeviz: llama.cpp aborted the process: {short_assert(text)}\n"
                  + "".join(f"  {line}\n" for line in text.splitlines()[1:8]))
    if _previous is not None:
        _previous(message)


def _ggml_base() -> ctypes.CDLL:
    # the copy libllama links: another copy would have an abort callback of its own
    path = linked_library_path("ggml-base")
    if path is None:
        raise OSError("libggml-base not found next to libllama")
    return ctypes.CDLL(str(path))


def _install() -> None:
    """Put our callback in place (again, if another was set since), chaining to the one before."""
    global _callback, _previous
    lib = _ggml_base()
    lib.ggml_set_abort_callback.argtypes = [ctypes.c_void_p]
    lib.ggml_set_abort_callback.restype = ctypes.c_void_p
    if _callback is None:
        _callback = _ABORT_CALLBACK(_on_abort)
    ours = ctypes.cast(_callback, ctypes.c_void_p).value
    before = lib.ggml_set_abort_callback(ours)
    if before and before != ours:
        _previous = _ABORT_CALLBACK(before)


def install() -> bool:
    """Install the callback now (it is installed by the first run_guarded otherwise);
    False when there is no ggml to install it in."""
    with _lock:
        try:
            _install()
            return True
        except (OSError, AttributeError):
            return False


def park_on(markers: tuple[str, ...], notice) -> None:
    """An abort whose text holds one of `markers` parks its thread (any thread) after
    `notice(text)`: the process and its other threads live on."""
    _parkers.append((tuple(markers), notice))
    install()


def short_assert(text: str) -> str:
    """ggml's abort line without the build's paths: 'deepseek2.cpp:77: GGML_ASSERT(...) failed'."""
    first = text.splitlines()[0] if text else "llama.cpp aborted"
    head, sep, rest = first.partition(": ")
    return (os.path.basename(head) + sep + rest) if sep else os.path.basename(first)


def run_guarded(fn, *args, aborted=LlamaAborted):
    """fn(*args) on a guarded daemon thread: its result, or `aborted(assert line)` raised
    when llama.cpp aborts in it (the caller's own error kind, with its own context).
    Exceptions fn raises are raised here."""
    with _lock:
        try:
            _install()
        except (OSError, AttributeError):   # no ggml to guard: call it plainly
            return fn(*args)
    slot = {"event": threading.Event(), "message": None, "result": None, "error": None}

    def body():
        _guarded[threading.get_ident()] = slot
        try:
            slot["result"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            slot["error"] = e
        finally:
            _guarded.pop(threading.get_ident(), None)
            slot["event"].set()

    threading.Thread(target=body, name="moeviz-llama-guarded", daemon=True).start()
    slot["event"].wait()
    if slot["message"] is not None:
        raise aborted(short_assert(slot["message"]))
    if slot["error"] is not None:
        raise slot["error"]
    return slot["result"]
