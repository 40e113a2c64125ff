"""Counted pieces of a JSON schema's grammar, as llama.cpp writes them
(common/json-schema-to-grammar.cpp): integer ranges (`int_range`: llama.cpp's
build_min_max_int, digit by digit) and repetitions (`repetition`: its build_repetition,
GBNF's `{m,n}`), with the bounds and counts read from a schema as common/json-schema.cpp
reads them (fractional bounds rounded inwards). Used by schema_grammar.py.

Where this differs from llama.cpp: both a bound and its exclusive form may be given (the
tighter wins; llama.cpp reads only the inclusive one) and draft 4's boolean
exclusiveMinimum / exclusiveMaximum are read; three slips of llama.cpp's are not copied: an
open minimum whose digits after the first begin with 0 (100, 105) lets smaller numbers
through (15 for 100: the rest "00" was read as the number 0), one whose rest begins with 1
(110) kept larger ones out (1050), and an open negative maximum let leading zeros through
("-05", not JSON). An open side writes up to 16 digits (llama.cpp's, as its `integer`
rule), or as many as the bound has; a bound over 16 digits works on a closed range.
"""
from __future__ import annotations

import math

BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
OPEN_DIGITS = 16     # llama.cpp's decimals_left: an open-ended side writes up to 16 digits


# Integer ranges: llama.cpp's build_min_max_int, on digit strings --------------------------------
def _rng(a: str, b: str) -> str:
    return f"[{a}]" if a == b else f"[{a}-{b}]"


def _more(lo: int, hi: int) -> str:
    if lo == hi == 1:
        return "[0-9]"
    return f"[0-9]{{{lo}}}" if lo == hi else f"[0-9]{{{lo},{hi}}}"


def _prev(c: str) -> str:
    return chr(ord(c) - 1)


def _next(c: str) -> str:
    return chr(ord(c) + 1)


def _uniform(frm: str, to: str) -> str:
    """Digit strings of len(frm) == len(to) from `frm` to `to` (llama.cpp's uniform_range)."""
    i = 0
    while i < len(frm) and i < len(to) and frm[i] == to[i]:
        i += 1
    parts = [f'"{frm[:i]}"'] if i else []
    if i < len(frm) and i < len(to):
        n = len(frm) - i - 1
        if n == 0:
            parts.append(f"[{frm[i]}-{to[i]}]")
        else:
            fs, ts, zeros, nines = frm[i + 1:], to[i + 1:], "0" * n, "9" * n
            reached = False
            if fs == zeros:
                s = f"{_rng(frm[i], _prev(to[i]))} {_more(n, n)}"
            else:
                s = f"[{frm[i]}] ({_uniform(fs, nines)})"
                if frm[i] < _prev(to[i]):
                    reached = ts == nines
                    s += f" | {_rng(_next(frm[i]), to[i] if reached else _prev(to[i]))} {_more(n, n)}"
            if not reached:
                s += f" | {_rng(to[i], to[i])} {_uniform(zeros, ts)}"
            parts.append(f"({s})")
    return " ".join(parts)


def _between(lo: int, hi: int) -> str:
    if hi < 0:
        return f'"-" ({_between(-hi, -lo)})'
    head = ""
    if lo < 0:
        head, lo = f'"-" ({_between(0, -lo)}) | ', 0
    lo_s, hi_s, alts = str(lo), str(hi), []
    for d in range(len(lo_s), len(hi_s)):
        alts.append(_uniform(lo_s, "9" * d))
        lo_s = "1" + "0" * d
    return head + " | ".join(alts + [_uniform(lo_s, hi_s)])


def _at_least(m: str, decimals: int, top: bool) -> list[str]:
    """Alternatives for numbers >= int(m) of at most `decimals` digits (top: canonical); inside,
    digit strings r after a fixed prefix: longer than m, or as long and r >= m."""
    less = max(decimals - 1, 1)
    start = "1" if top else "0"
    if not m.strip("0"):
        return ["[0]", f"[1-9] {_more(0, less)}"] if top else [_more(len(m), decimals)]
    c, alts = m[0], []
    if len(m) == 1:
        if c > start:
            alts.append(f"{_rng(start, _prev(c))} {_more(1, less)}")
        return alts + [f"{_rng(c, '9')} {_more(0, less)}"]
    if c > start and len(m) <= less:
        alts.append(f"{_rng(start, _prev(c))} {_more(len(m), less)}")
    alts.append(f"{_rng(c, c)} ({' | '.join(_at_least(m[1:], less, False))})")
    if c < "9":
        alts.append(f"{_rng(_next(c), '9')} {_more(len(m) - 1, less)}")
    return alts


def int_range(lo: int | None, hi: int | None) -> str:
    """GBNF (no trailing space) for the JSON integers from lo to hi (None: open)."""
    if lo is not None and hi is not None:
        if lo > hi:
            raise ValueError(f"no integer is at least {lo} and at most {hi}")
        return _between(lo, hi)
    if lo is not None:
        if lo < 0:
            return f'"-" ({_between(0, -lo)}) | [0] | [1-9] {_more(0, OPEN_DIGITS - 1)}'
        return " | ".join(_at_least(str(lo), max(OPEN_DIGITS, len(str(lo))), True))
    if hi is None:
        raise ValueError("an integer range needs a minimum or a maximum")
    if hi >= 0:
        return f'"-" [1-9] {_more(0, OPEN_DIGITS - 1)} | {_between(0, hi)}'
    return f'"-" ({" | ".join(_at_least(str(-hi), max(OPEN_DIGITS, len(str(-hi))), True))})'


def _number(schema: dict, key: str):
    v = schema[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{key} must be a finite number, got {v!r}")
    return v


def int_bounds(schema: dict) -> tuple[int | None, int | None]:
    """The inclusive integer bounds of an integer schema (None: open)."""
    lows, highs = [], []
    for key, out, near, step in (("minimum", lows, math.ceil, 1), ("maximum", highs, math.floor, -1)):
        excl = "exclusive" + key[0].upper() + key[1:]
        if key in schema:
            v = _number(schema, key)
            out.append(near(v))
            if schema.get(excl) is True:        # draft 4: a boolean beside the bound
                out[-1] = (math.floor(v) if step > 0 else math.ceil(v)) + step
        if excl in schema and not isinstance(schema[excl], bool):
            v = _number(schema, excl)
            out.append((math.floor(v) if step > 0 else math.ceil(v)) + step)
    return (max(lows) if lows else None), (min(highs) if highs else None)


# Repetitions and counts ------------------------------------------------------------------------
REPEAT_LIMIT = 2000   # llama.cpp's MAX_REPETITION_THRESHOLD: past it {m,n} is refused (m) or has no end (n)
BLOCK = 1000


def repetition(item: str, lo: int, hi: int | None, sep: str = "", add_rule=None) -> str:
    """llama.cpp's build_repetition: `item` lo to hi times (None: no limit), `sep` between.
    A count past llama.cpp's limit goes in named blocks (`add_rule(name, body)` -> name):
    llama.cpp's own converter writes {0,5000}, which its parser reads as no limit."""
    big = add_rule is not None and max(lo, hi or 0) > REPEAT_LIMIT
    if hi == 0:
        return ""
    if lo == 0 and hi == 1:
        return f"{item}?"
    if not sep:
        if lo == 1 and hi is None:
            return f"{item}+"
        if lo == 0 and hi is None:
            return f"{item}*"
        return _blocks(item, lo, hi, add_rule) if big else f"{item}{{{lo},{'' if hi is None else hi}}}"
    unit = add_rule(f"{item}-next", f"{sep} {item}") if big else f"({sep} {item})"
    rest = repetition(unit, max(lo - 1, 0), None if hi is None else hi - 1, add_rule=add_rule)
    return f"({item} {rest})?" if lo == 0 else f"{item} {rest}"


def _blocks(item: str, lo: int, hi: int | None, add_rule) -> str:
    block = add_rule(f"{item}-{BLOCK}", f"{item}{{{BLOCK}}}")

    def rep(x, a, b):
        return repetition(x, a, b, add_rule=add_rule)

    q, r = divmod(lo, BLOCK)
    parts = [rep(block, q, q), rep(item, r, r)]
    if hi is None:
        parts.append(f"{item}*")
    elif hi - lo <= REPEAT_LIMIT:
        parts.append(rep(item, 0, hi - lo))
    else:                                   # fewer than Q blocks and any rest, or Q blocks and up to R
        n_blocks, rest = divmod(hi - lo, BLOCK)
        parts.append(f"({rep(block, 0, n_blocks - 1)} {rep(item, 0, BLOCK - 1)} | "
                     f"{rep(block, n_blocks, n_blocks)} {rep(item, 0, rest)})")
    return " ".join(p for p in parts if p)


def counts(schema: dict, lo_key: str, hi_key: str) -> tuple[int, int | None]:
    vals = []
    for key in (lo_key, hi_key):
        v = schema.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{key} must be a non-negative integer, got {v!r}")
        vals.append(v)
    lo, hi = vals[0] or 0, vals[1]
    if hi is not None and lo > hi:
        raise ValueError(f"{lo_key} {lo} is more than {hi_key} {hi}")
    return lo, hi
