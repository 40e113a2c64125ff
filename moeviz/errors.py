"""The one place that decides which exceptions are the user's to fix, and how they read.

CLI and server both use it: a known error becomes one line naming the problem; an
unknown one is a bug and keeps its traceback.
"""
from __future__ import annotations


def user_error_types() -> tuple[type[BaseException], ...]:
    from .capture.lib import LlamaCppUnavailable  # noqa: PLC0415
    from .capture.routing import MissingRouting  # noqa: PLC0415
    from .cli import UserError  # noqa: PLC0415
    from .engine import BusyError, DecodeError, ModelLoadError, NotCausalError, NotMoEError, PromptError, SettingsError  # noqa: PLC0415
    from .engine.backends import CaptureUnavailable  # noqa: PLC0415
    from .gguf_info import ModelFileError  # noqa: PLC0415
    from .analysis.routing import AnalysisError  # noqa: PLC0415
    from .export import ExportError  # noqa: PLC0415
    from .prompts import PromptLibraryError  # noqa: PLC0415
    from .trace import TraceFormatError  # noqa: PLC0415

    return (LlamaCppUnavailable, MissingRouting, UserError, BusyError, DecodeError, ModelLoadError, NotMoEError, NotCausalError,
            PromptError, SettingsError, CaptureUnavailable, ModelFileError, TraceFormatError, PromptLibraryError, ExportError, AnalysisError)


def user_message(e: BaseException) -> str | None:
    """One line for a user-caused error, or None for a bug."""
    if isinstance(e, user_error_types()):
        return " ".join(str(e).split())
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"{e.strerror}: {e.filename}"
    if isinstance(e, OSError) and e.errno is not None:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return None
