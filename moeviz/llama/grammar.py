"""Grammars for constrained sampling: GBNF text checked before llama.cpp parses it, and
JSON schemas converted to GBNF by llama-cpp-python's own converter (llama_cpp.llama_grammar's
SchemaConverter, JSON_GBNF), extended in schema_grammar.py with what llama.cpp's C++
converter enforces and the Python one drops (integer minimum / maximum, counts as `{m,n}`,
JSON-safe strings, literals and patterns, additionalProperties): never by hand.

llama.cpp's grammar parser catches its own syntax errors (the sampler comes back NULL),
but it recurses once per nested group, so a deeply nested grammar could overflow the
thread's stack: `check_gbnf` refuses that, NUL characters (C strings end there),
repetitions {m,n} with n < m (llama.cpp's parser then loops until memory runs out) or n
over its limit of 2000 (it drops the limit), and oversized text first. What llama.cpp then
refuses is reported with its reason, a syntax error with its line and column (the parser
printed those to stderr only: patches/0060-grammar-errors-logged.patch logs them).

`grammar_for(gbnf=..., json_schema=...)` is the one entry for callers that need a
grammar (structured output, forced tool calls): GBNF text back, or GrammarError.
"""
from __future__ import annotations

import re

from ..errors import UserError
from ..settings import MAX_GRAMMAR_CHARS

MAX_NESTING = 100            # parenthesised groups inside one another
MAX_SCHEMA_DEPTH = 64        # JSON schema nesting handed to the converter (it recurses too)
GBNF_HELP = "see llama.cpp's grammars/README.md"


class GrammarError(UserError, ValueError):
    """A grammar or JSON schema that cannot constrain a run; `param` names the field."""

    def __init__(self, message: str, param: str | None = "grammar"):
        super().__init__(message)
        self.param = param


def check_gbnf(text: str, param: str = "grammar") -> str:
    """`text` if llama.cpp can be given it safely; else GrammarError."""
    if not isinstance(text, str) or not text.strip():
        raise GrammarError(f"'{param}' must be non-empty GBNF text", param)
    if len(text) > MAX_GRAMMAR_CHARS:
        raise GrammarError(f"'{param}' is {len(text)} characters; the limit is {MAX_GRAMMAR_CHARS}", param)
    if "\x00" in text:
        raise GrammarError(f"'{param}' holds a NUL character", param)
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"[":                       # a literal or a character class: skip it, escapes included
            close = '"' if c == '"' else "]"
            i += 1
            while i < n and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif c == "#":                       # a comment, to the end of the line
            while i < n and text[i] not in "\r\n":
                i += 1
        elif c == "{":
            _check_count(_COUNT.match(text, i), param)
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(0, depth - 1)
        i += 1
    if deepest > MAX_NESTING:
        raise GrammarError(f"'{param}' nests groups {deepest} deep; the limit is {MAX_NESTING}", param)
    return text


_COUNT = re.compile(r"\{\s*([0-9]+)\s*(?:(,)\s*([0-9]*)\s*)?\}")
REPEAT_LIMIT = 2000          # llama.cpp's MAX_REPETITION_THRESHOLD (src/llama-grammar.cpp)


def _check_count(m, param: str) -> None:
    """A repetition {m,n} llama.cpp would mishandle: n < m makes its parser loop (it counts
    n - m optional rules, unsigned) until memory runs out; an n over its limit it reads as
    no limit at all."""
    if m is None:
        return                               # llama.cpp's parser reports what it cannot read
    lo, comma, hi = m.groups()
    hi = lo if not comma else hi
    if hi and int(hi) < int(lo):
        raise GrammarError(f"'{param}' repeats something {{{lo},{hi}}} times: the maximum is below the minimum", param)
    if hi and int(hi) > REPEAT_LIMIT:
        raise GrammarError(f"'{param}' repeats something up to {hi} times; llama.cpp's limit is {REPEAT_LIMIT} "
                           "(above it, it drops the limit)", param)


def last_grammar_error(mark, text: str = "") -> str:
    """llama.cpp's logged reason for refusing the grammar `text`: a syntax error with its
    line and column (patches/0060 logs the parser's error, which it printed to stderr
    only), left recursion, no root rule; else a pointer to the syntax."""
    if mark is not None:
        log, since = mark
        lines = [line for _level, line in log.since(since)]
        for i, line in enumerate(lines):
            if "error parsing grammar: " in line:
                # the parser's message ends with the rest of the grammar from where it
                # stopped, which may span lines (and other lines follow it): its length
                # gives the position
                return _where([line.split("error parsing grammar: ", 1)[1], *lines[i + 1:]], text)
            low = line.lower()
            if "grammar" in low and ("left recursion" in low or "does not contain" in low or "undefined" in low
                                     or "references" in low):
                return line.split(": ", 1)[-1].strip() if "llama_grammar" in line else line.strip()
    return f"llama.cpp's grammar parser refused it ({GBNF_HELP})"


def _where(lines: list[str], text: str) -> str:
    """The parser's message ('expecting name at <rest of the grammar>', its first line and
    the log's lines after it) as 'expecting name at line L, column C (near '...')': the
    rest is the longest run of those lines that ends the grammar. A message without a
    position (undefined rule, end of input) as it is."""
    reason, at, first = lines[0].partition(" at ")
    body = text.rstrip("\n")
    rest = None
    for j in range(1, len(lines) + 1):
        candidate = "\n".join([first, *lines[1:j]]).rstrip("\n")
        if body.endswith(candidate):
            rest = candidate
    if not at or rest is None:
        return lines[0].strip()[:200]
    pos = len(body) - len(rest)
    line = body.count("\n", 0, pos) + 1
    column = pos - (body.rfind("\n", 0, pos) + 1) + 1
    near = body[pos:pos + 24].split("\n", 1)[0]
    return f"{reason} at line {line}, column {column}" + (f" (near {near!r})" if near else " (the end)")


def _depth(v, limit: int, d: int = 0) -> int:
    if d > limit:
        return d
    if isinstance(v, dict):
        return max([_depth(x, limit, d + 1) for x in v.values()], default=d)
    if isinstance(v, list):
        return max([_depth(x, limit, d + 1) for x in v], default=d)
    return d


def json_schema_grammar(schema, param: str = "response_format") -> str:
    """GBNF for JSON that satisfies `schema` (a JSON schema object), by
    schema_grammar.schema_to_gbnf; None: any JSON object (JSON_GBNF)."""
    from llama_cpp import llama_grammar   # noqa: PLC0415 - loads the library: only when a schema is asked for

    from .schema_grammar import schema_to_gbnf   # noqa: PLC0415 - imports llama_cpp too

    if schema is None:
        return llama_grammar.JSON_GBNF
    if not isinstance(schema, dict):
        raise GrammarError(f"'{param}': the JSON schema must be an object", param)
    if _depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise GrammarError(f"'{param}': the JSON schema is nested more than {MAX_SCHEMA_DEPTH} deep", param)
    try:
        text = schema_to_gbnf(schema)
    except RecursionError:
        raise GrammarError(f"'{param}': the JSON schema refers to itself too deeply to convert", param) from None
    except Exception as e:   # noqa: BLE001 - the converter raises ValueError, KeyError, AssertionError, re.error...
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise GrammarError(f"'{param}': the JSON schema cannot be turned into a grammar: {why}", param) from None
    return check_gbnf(text, param)


def grammar_for(*, gbnf: str | None = None, json_schema=None, any_json: bool = False) -> str:
    """GBNF text for a run: the given grammar (checked), or one generated from a JSON
    schema, or (any_json) any JSON object."""
    if gbnf is not None:
        return check_gbnf(gbnf)
    if json_schema is not None or any_json:
        return json_schema_grammar(json_schema)
    raise GrammarError("no grammar, JSON schema or JSON object asked for")
