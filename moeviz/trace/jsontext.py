"""The one JSON reader for text from outside: request bodies, websocket messages, uploaded
and opened traces. Every way it can fail is one line in the caller's error kind.

Python's json.loads fails in more ways than JSONDecodeError: an integer of over 4,300
digits raises a plain ValueError (int's conversion limit: a 500 with a traceback, an
upload's parser dying), "[" x 30000 a RecursionError, bytes that are not UTF-8 a
UnicodeDecodeError. It also accepts what JSON does not have: NaN, Infinity and -Infinity
as literals and 1e999 as infinity (a trace stored with them could never be served again:
every reply must be strict JSON), and lone surrogates ("\\ud800"), which no UTF-8 reply
can carry.
"""
from __future__ import annotations

import json
import math
import re

INT_DIGITS_MAX = 4300   # Python's default int string conversion limit (sys.get_int_max_str_digits)

# a \\uD800-\\uDFFF escape: only then can the parsed value hold a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


class _NotJson(ValueError):
    """A reason, in words, that the text is not JSON this reader takes."""


def _constant(name: str):
    raise _NotJson(f"holds {name}, which is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"holds the number {text[:40]}, too large to be finite")
    return value


def _int(text: str) -> int:
    if len(text) > INT_DIGITS_MAX:
        raise _NotJson(f"holds an integer of {len(text.lstrip('-'))} digits (at most {INT_DIGITS_MAX})")
    return int(text)


def parse_json(raw: bytes | str, what: str, error: type[Exception], *, finite: bool = True):
    """`raw` as a JSON value; `error(one line)` naming `what` ("the request body", "message",
    "trace") when it is not strict, finite, valid-Unicode JSON. `finite=False` lets NaN and
    infinities through for the caller to refuse where it can say where they are (a trace's
    routing arrays: `nonfinite_path` for the rest)."""
    try:
        if finite:
            value = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
        else:
            value = json.loads(raw, parse_int=_int)
    except _NotJson as e:
        raise error(f"{what} {e}") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):   # JSONDecodeError is a ValueError
        raise error(f"{what} is not valid JSON") from None
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SURROGATE_ESCAPE.search(data):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{what} holds a lone surrogate (such as \\ud800): not valid Unicode text") from None
        except RecursionError:
            raise error(f"{what} is nested too deeply") from None
    return value


def nonfinite_path(value, path: str = "", skip: tuple[str, ...] = ()) -> str | None:
    """Where in a parsed value a NaN or infinity is ("settings.temperature"), None when
    nowhere; the top-level keys in `skip` are not walked (arrays checked elsewhere)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "the value")
    if isinstance(value, dict):
        for k, v in value.items():
            if not path and k in skip:
                continue
            found = nonfinite_path(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = nonfinite_path(v, f"{path}[{i}]")
            if found:
                return found
    return None
