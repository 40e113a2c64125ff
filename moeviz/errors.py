"""moeviz's errors: one hierarchy at the bottom of the package, imported by every layer.

A `MoevizError` is one the user can act on: it reads as one line and carries the HTTP
status the server answers it with. Anything else that escapes is a bug. Nothing here
knows the layers above; each layer's own errors subclass these (keeping the builtin
base they always had, e.g. ValueError, so existing `except` clauses still hold).

Translated in exactly two places: the CLI (`moeviz/cli.py`: "moeviz CMD: error: ...",
exit 1; a bug keeps its traceback) and the app (`moeviz/server/errors.py`: JSON
{"error": ...} with `status`, or a websocket `error` message; a bug is logged and the
client gets a generic line, never a traceback or a server path).
"""
from __future__ import annotations


class MoevizError(Exception):
    """An error the user can act on: one line, no traceback."""

    status = 400

    def one_line(self) -> str:
        return " ".join(str(self).split()) or type(self).__name__


class UserError(MoevizError):
    """Bad input: arguments, settings, prompts, requests, model or trace files."""


class NotFound(MoevizError):
    status = 404


class TooLarge(MoevizError):
    status = 413


class Forbidden(MoevizError):
    status = 403


class Busy(MoevizError):
    """The thing asked for is taken (a generation already running)."""

    status = 409


class Unavailable(MoevizError):
    """Not possible here and now: a library build without a feature, a model still loading."""

    status = 503


class RunFailed(MoevizError):
    """llama.cpp failed during a run that was valid to start (decode status, missing routing)."""

    status = 500


def one_line(e: BaseException) -> str | None:
    """The user-facing line of a MoevizError; None for anything else (a bug)."""
    return e.one_line() if isinstance(e, MoevizError) else None
