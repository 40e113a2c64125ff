"""The grammar a forced tool choice runs under (`required`, or a named function): the
family's own call syntax around arguments that satisfy each tool's JSON schema, so even
a weak model answers with a valid call. The schemas go through the converter structured
output uses (moeviz/llama/schema_grammar.py: llama-cpp-python's, with llama.cpp's integer
ranges and the fixes listed there), one rule set per tool in one grammar; the text is
checked as any run's grammar is.
"""
from __future__ import annotations

import json

from ...llama.grammar import GrammarError, check_gbnf
from .families import Family
from .jsonforms import Llama3
from .harmony import Harmony
from .request import ChatPrompt

_SENTINEL = {"__args__": 0}
_CALL = "\x00call\x00"
THINK_TEXT = '( [^<] | "<" [^/] )*'      # reasoning: anything up to its closing tag (no "</" inside)
XML_TEXT = '( [^<] | "<" [^/] )*'        # an XML-style string parameter's text


def _split(text: str, marker: str) -> tuple[str, str]:
    i = text.index(marker)
    return text[:i], text[i + len(marker):]


def _converter():
    from ...llama.schema_grammar import converter  # noqa: PLC0415 - loads the library: only when a grammar is asked for
    return converter()


def _string_only(schema) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string" and not (set(schema) - {"type", "description"})


def _call_rule(conv, family: Family, i: int, fn: dict) -> str:
    """The GBNF of one call of `fn` in the family's syntax."""
    lit = conv._format_literal
    name, params = fn["name"], fn.get("parameters") or {"type": "object", "properties": {}}
    params = conv.resolve_refs(params, f"tool-{i}")
    if hasattr(family, "xml_parts"):         # XML-style families: one piece per parameter, string values as text
        props = params.get("properties") or {}
        required = [k for k in params.get("required", []) if k in props]
        parts = []
        for k in required + [k for k in props if k not in required]:
            string = _string_only(props[k]) and getattr(family, "raw_strings", True)
            _, open_, close, _ = family.xml_parts(name, k, string)
            value = XML_TEXT if string else conv.visit(props[k], f"tool-{i}-{k}")
            piece = f"{lit(open_)} {value} {lit(close)}"
            parts.append(piece if k in required else f"( {piece} )?")
        head, _, _, tail = family.xml_parts(name, "", True)
        return " ".join([lit(head), *parts, lit(tail)])
    args = conv.visit(params, f"tool-{i}-args")
    if hasattr(family, "json_parts"):
        before, after = family.json_parts(name)
        return f"{lit(before)} {args} {lit(after)}"
    before, after = _split(family.write(name, _SENTINEL, 0, "abcDEF123"), json.dumps(_SENTINEL))
    if family.name == "kimi-k2":          # the call's index: any number
        b1, b2 = _split(before, ":0<")
        return f'{lit(b1 + ":")} [0-9]+ {lit("<" + b2)} {args} {lit(after)}'
    if "abcDEF123" in after:             # Mistral Nemo's call id: 9 alphanumerics
        a1, a2 = _split(after, "abcDEF123")
        return f"{lit(before)} {args} {lit(a1)} [a-zA-Z0-9]{{9}} {lit(a2)}"
    return f"{lit(before)} {args} {lit(after)}"


def tool_grammar(family: Family, prompt: ChatPrompt, *, thinking: bool, opened: bool) -> str:
    """GBNF for tool_choice `required` (any of the tools) or a named function."""
    conv = _converter()
    lit = conv._format_literal
    forced = prompt.forced_name
    tools = [t["function"] for t in prompt.tools if forced is None or t["function"]["name"] == forced]
    try:
        alts = [conv._add_rule(f"call-{i}", _call_rule(conv, family, i, fn)) for i, fn in enumerate(tools)]
    except RecursionError:
        raise GrammarError("a tool's parameters schema refers to itself too deeply to convert", "tools") from None
    except GrammarError:
        raise
    except Exception as e:   # noqa: BLE001 - the converter raises ValueError, KeyError, re.error...
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise GrammarError(f"a tool's parameters schema cannot be turned into a grammar: {why}", "tools") from None
    conv._add_rule("call", " | ".join(alts))
    prefix, sep, suffix = _joints(family)
    parallel = prompt.parallel_tool_calls and forced is None and sep is not None
    calls = f"{lit(prefix)} call ( {lit(sep)} call )* {lit(suffix)}" if parallel else f"{lit(prefix)} call {lit(suffix)}"
    ws = '[ \\t\\n]{0,4}'               # bounded: a weak model would write whitespace forever
    if isinstance(family, Harmony):
        think = '( "<|channel|>analysis<|message|>" [^<]* "<|end|><|start|>assistant" )?'
        root = f"{think} {calls}"
    elif family.name == "solar-open":
        root = f'( "<|think|>" [^<]* "<|end|><|begin|>assistant" )? {calls}'
    elif thinking:
        start, end = family.think
        body = f"{THINK_TEXT} {lit(end)} {ws}"
        root = f"{body} {calls}" if opened else f"( {lit(start)} {body} )? {ws} {calls}"
    else:
        root = calls
    conv._add_rule("root", root)
    return check_gbnf(conv.format_grammar(), "tools")


def _joints(family: Family) -> tuple[str, str | None, str]:
    """(before the calls, between two calls or None, after them) of the family's calls."""
    one = family.join([_CALL])
    prefix, suffix = _split(one, _CALL)
    if isinstance(family, (Harmony, Llama3)):
        return prefix, None, suffix
    two = family.join([_CALL, _CALL])
    sep = two[len(prefix) + len(_CALL):two.rindex(_CALL)]
    return prefix, sep, suffix
