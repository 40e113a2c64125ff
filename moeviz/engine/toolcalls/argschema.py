"""Argument values read by the tool's JSON schema, as llama.cpp's XML-style parsers read them
(common/json-schema.cpp: common_chat_schema_from_json, may_be_string): a parameter whose schema
allows a string is the raw text between its tags; any other is the JSON it spells. A value the
schema does not type (an unknown parameter) is JSON when it parses, else text."""
from __future__ import annotations

import ast
import json

_STRUCTURAL = {"type", "$ref", "anyOf", "oneOf", "allOf", "const", "enum", "properties", "additionalProperties",
               "items", "prefixItems", "pattern", "minLength", "maxLength", "format"}


def tool_params(tools, name: str) -> dict | None:
    """The parameters schema of the tool called `name` (None when there is no such tool)."""
    for t in tools or ():
        fn = t["function"]
        if fn["name"] == name:
            return fn.get("parameters") or {"type": "object", "properties": {}}
    return None


def _ref(root, ref: str):
    """A local `#/...` reference into the parameters schema `root`."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in [p for p in ref[1:].split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _object_like(schema: dict) -> bool:
    return "properties" in schema or ("additionalProperties" in schema and schema["additionalProperties"] is not True)


def kind(schema, root, seen: frozenset = frozenset()) -> tuple[str, object]:
    """The shape llama.cpp builds for `schema`, in its order: ("ref", target), ("anyof", alternatives),
    ("const"/"enum", values), ("object", properties), ("array", items), ("string", None),
    ("allof", parts) or ("json", None) for any other value."""
    if not isinstance(schema, dict):
        return "json", None
    if "$ref" in schema:
        ref = schema["$ref"]
        target = None if ref in seen else _ref(root, ref)
        return ("ref", (target, seen | {ref})) if target is not None else ("json", None)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return "anyof", [c for c in schema[key] or () if isinstance(c, dict)]
    t = schema.get("type")
    if isinstance(t, list):
        return "anyof", [{**schema, "type": x} for x in t]
    if "const" in schema:
        return "const", [schema["const"]]
    if "enum" in schema:
        return "enum", list(schema["enum"] or ())
    if t is None:
        if _object_like(schema):
            return "object", schema.get("properties") or {}
        if "allOf" in schema:
            return "allof", [c for c in schema["allOf"] or () if isinstance(c, dict)]
        if "items" in schema or "prefixItems" in schema:
            return ("array", schema.get("items")) if "prefixItems" not in schema else ("json", None)
        if {"pattern", "minLength", "maxLength", "format"} & set(schema):
            return "string", None
        return "json", None
    if t == "object":
        if not _object_like(schema) and "allOf" in schema:
            return "allof", [c for c in schema["allOf"] or () if isinstance(c, dict)]
        return "object", schema.get("properties") or {}
    if t == "string" and "allOf" in schema:
        return "allof", [c for c in schema["allOf"] or () if isinstance(c, dict)]
    if t == "string":
        return "string", None
    if t == "array":
        return ("array", schema.get("items")) if "prefixItems" not in schema else ("json", None)
    return "json", None


def may_be_string(schema, root, seen: frozenset = frozenset()) -> bool:
    """Whether a value of `schema` may be a string (llama.cpp: then it is taken as raw text)."""
    k, arg = kind(schema, root, seen)
    if k == "string":
        return True
    if k == "ref":
        target, seen = arg
        return may_be_string(target, root, seen)
    if k in ("const", "enum"):
        return any(isinstance(v, str) for v in arg)
    if k == "anyof":
        return any(may_be_string(c, root, seen) for c in arg)
    if k == "allof":            # every part that constrains must allow a string
        parts = [c for c in arg if set(c) & _STRUCTURAL]
        return bool(parts) and all(may_be_string(c, root, seen) for c in parts)
    return False


def tagged_value(raw: str, schema, root):
    """A parameter's text as its value: the text itself when the schema allows a string, else the
    JSON it spells, or the Python literal (Seed-OSS's template writes `value | string`, a Python
    repr; llama.cpp's mapper turns those quotes into JSON too), else the text."""
    if schema is not None and may_be_string(schema, root):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(raw.strip())
        json.dumps(value)                 # no bytes, sets or the like inside
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw
    return value if isinstance(value, (dict, list, bool, int, float)) else raw


def properties(root) -> dict:
    """The properties of a tool's parameters object (refs followed)."""
    k, arg = kind(root, root)
    while k == "ref":
        k, arg = kind(arg[0], root, arg[1])
    return arg if k == "object" and isinstance(arg, dict) else {}
