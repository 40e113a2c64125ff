"""JSON schema -> GBNF: llama-cpp-python's SchemaConverter (llama_cpp.llama_grammar),
extended where llama.cpp's own converter (common/json-schema-to-grammar.cpp and
common/json-schema.cpp) enforces what the Python one drops or gets wrong. Imported only when
a schema is converted (importing llama_cpp loads the library); grammar.py's
json_schema_grammar calls `schema_to_gbnf`, and `converter()` is the one to build other
grammars around schemas with.

Added or fixed, as llama.cpp does it unless said otherwise:
- integer minimum / maximum / exclusiveMinimum / exclusiveMaximum: digit-by-digit rules
  (schema_ranges.int_range, llama.cpp's build_min_max_int);
- string minLength / maxLength and array minItems / maxItems as GBNF's `{m,n}` (the Python
  one nests a group per item, so over 100 grammar.py refused the grammar);
- a string's characters exclude raw control characters (invalid JSON);
- literals (const, enum, property names) escape backslashes: the Python one made the const
  "a\\b" a backspace, and a quote in one broke the grammar;
- `{}`, `true` and schemas with only annotations accept any JSON value (the Python one: only
  an object, or refused), `items: {}` any items;
- `"type": [...]` keeps the schema's other keywords (enum, bounds, properties) in each
  alternative (the Python one kept only the type);
- additionalProperties as llama.cpp writes it: a comma before extra keys (missing in the
  Python one), `true` any value (the Python one: objects), extra keys none of the declared
  names (llama.cpp's _not_strings; a declared name's prefix is allowed, llama.cpp's
  missed that);
- `$ref`: resolved wherever it is, a `$ref` at the top too (pydantic's recursive models: the
  Python one left the target's own refs unresolved); rules named from the whole path
  (llama.cpp's; by the last segment two refs could share a rule); allOf follows `$ref`s and intersects enums (llama.cpp's); an allOf of one
  schema is that schema;
- `pattern`: rewritten so that what it writes is JSON string content (see `json_pattern`).
Not enforced (by neither converter): number minimum / maximum (llama.cpp ignores them for
non-integers too), multipleOf, uniqueItems, min/maxProperties, not, if/then/else, a pattern's
min/maxLength, formats other than date, time, date-time and uuid (date allows Feb 31);
oneOf is anyOf; allOf's object parts make every property required.
"""
from __future__ import annotations

import json
import re

from llama_cpp import llama_grammar as lg

from .schema_ranges import BOUND_KEYS, counts, int_bounds, int_range, repetition

JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
NOT_JSON = r'"\\\x00-\x1F\x7F'         # in a class: what a JSON string must escape
ANY_CHAR = f"[^{NOT_JSON}]"
STRUCTURE = {"$ref", "oneOf", "anyOf", "allOf", "const", "enum", "properties", "items", "prefixItems", "pattern"}
SHORTHAND = {"d": "[0-9]", "w": "[a-zA-Z0-9_]", "s": r"( |\\t|\\n|\\r|\\f)", "D": rf"[^0-9{NOT_JSON}]",
             "W": rf"[^a-zA-Z0-9_{NOT_JSON}]", "S": rf"[^ {NOT_JSON}]"}
IN_CLASS = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " "}     # \s in a class: a space (tab, newline need escapes)
QUOTE = r'(\\")'                                        # a quote, as JSON writes it
REGEX_ESCAPED = set("[]()|{}*+?")                        # the Python converter unescapes these itself


def _unsupported(what: str, pattern: str) -> ValueError:
    return ValueError(f"pattern /{pattern}/: {what} has no grammar form")


def _regex_class(p: str, i: int) -> tuple[str, int]:
    """The class starting at p[i] == "[", as one whose characters are JSON string content."""
    j, neg, items = i + 1, p[i + 1:i + 2] == "^", []
    j += neg
    while j < len(p) and p[j] != "]":
        c, j = p[j], j + 1
        if c == "\\" and j < len(p):
            x, j = p[j], j + 1
            if x in IN_CLASS:
                items.append(IN_CLASS[x])
            elif x in "ux":
                items.append("\\" + x)
            elif x.isalnum():
                raise _unsupported(f"\\{x} in a class", p)
            elif x not in '"\\':            # a quote or backslash needs an escape: left out
                items.append(f"\\x{ord(x):02X}")
        elif c != '"':
            items.append(c)
    if j >= len(p):
        raise ValueError(f"pattern /{p}/: a class is not closed")
    if neg:
        return f"[^{''.join(items)}{NOT_JSON}]", j + 1
    if not items:
        raise _unsupported("a class of only quotes or backslashes", p)
    return f"[{''.join(items)}]", j + 1


def json_pattern(pattern: str) -> str:
    """`pattern` rewritten for the Python converter so that what it writes is JSON string
    content: \\d \\w \\s and their negations, escaped punctuation, `(?:` groups; `.` and
    negated classes without quotes, backslashes or control characters; quotes, backslashes
    and \\n \\t \\r \\f written as JSON escapes; the whole inside one group (a top-level `|`
    stays inside the quotes); an unanchored start or end matches anything there (regex
    search). Lookarounds, \\b, back-references: ValueError."""
    if not isinstance(pattern, str):
        raise ValueError("pattern must be a string")
    try:
        re.compile(pattern)             # the rewrite below would close an unbalanced group itself
    except re.error as e:
        raise ValueError(f"pattern /{pattern[:80]}/ is not a valid regular expression: {e.msg}") from None
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    p = pattern[int(start):len(pattern) - int(end)]
    out, i = [], 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            if i + 1 >= len(p):
                raise ValueError(f"pattern /{pattern}/ ends in a backslash")
            x, i = p[i + 1], i + 2
            if x in SHORTHAND:
                out.append(SHORTHAND[x])
            elif x in "ntrf":
                out.append(f"(\\\\{x})")
            elif x in "ux" or x in REGEX_ESCAPED:
                out.append("\\" + x)
            elif x == "\\":
                out.append(r"(\\\\)")
            elif x == '"':
                out.append(QUOTE)
            elif x.isalnum():
                raise _unsupported(f"\\{x}", pattern)
            else:
                out.append(f"[\\x{ord(x):02X}]")
        elif c == "[":
            cls, i = _regex_class(p, i)
            out.append(cls)
        elif c == "(" and p.startswith("(?", i):
            if not p.startswith("(?:", i):
                raise _unsupported("a (? group", pattern)
            out.append("(")
            i += 3
        elif c in "^$":
            raise _unsupported("an anchor inside the pattern", pattern)
        else:
            out.append(ANY_CHAR if c == "." else QUOTE if c == '"' else c)
            i += 1
    body = "".join(out)
    return f"^{'' if start else ANY_CHAR + '*'}({body}){'' if end else ANY_CHAR + '*'}$"


class SchemaConverter(lg.SchemaConverter):
    """llama-cpp-python's converter with llama.cpp's integer ranges, counts and fixes (above)."""

    def _format_literal(self, literal):
        return '"' + re.sub(r'[\r\n"\\]', lambda m: {"\r": "\\r", "\n": "\\n"}.get(m[0], "\\" + m[0]), literal) + '"'

    def _add_primitive(self, name, rule):
        if name == "char":
            rule = lg.BuiltinRule(JSON_CHAR, [])
        return super()._add_primitive(name, rule)

    def _any_value(self, rule_name):
        return self._add_rule(rule_name, self._add_primitive("value", lg.PRIMITIVE_RULES["value"]))

    def visit(self, schema, name):
        if schema is True or schema == {}:
            schema = {}
        elif not isinstance(schema, dict):
            raise ValueError(f"a schema must be an object or true, got {json.dumps(schema)[:60]}")
        kind, keys = schema.get("type"), set(schema)
        rule_name = name + "-" if name in lg.RESERVED_NAMES else name or "root"
        if keys & {"$ref", "oneOf", "anyOf"}:
            return super().visit(schema, name)
        if isinstance(kind, list):
            if not kind:
                raise ValueError("type must not be an empty list")
            return self._add_rule(rule_name, self._generate_union_rule(name, [{**schema, "type": t} for t in kind]))
        if keys & {"const", "enum"}:
            return super().visit(schema, name)
        if kind == "integer" and keys & set(BOUND_KEYS):
            lo, hi = int_bounds(schema)
            if lo is not None or hi is not None:
                return self._add_rule(rule_name, f"({int_range(lo, hi)}) space")
        has_props = "properties" in keys or schema.get("additionalProperties", True) is not True
        if kind in (None, "object") and "allOf" in keys and not has_props:
            return self._all_of(schema["allOf"], name, rule_name)
        items = schema.get("items", {})
        if (kind == "array" or (kind is None and "items" in keys)) and "prefixItems" not in keys and \
                (items is True or isinstance(items, dict)):
            return self._array(schema, items, name, rule_name)
        if kind in (None, "string") and "pattern" in keys:
            return super().visit({**schema, "pattern": json_pattern(schema["pattern"])}, name)
        fmt = schema.get("format")
        if kind in (None, "string") and isinstance(fmt, str) and (re.match(r"^uuid[1-5]?$", fmt)
                                                                  or f"{fmt}-string" in lg.STRING_FORMAT_RULES):
            return super().visit({**schema, "type": "string"}, name)
        if kind == "string" or (kind is None and keys & {"minLength", "maxLength"} and not has_props):
            lo, hi = counts(schema, "minLength", "maxLength")
            if lo or hi is not None:
                char = self._add_primitive("char", lg.PRIMITIVE_RULES["char"])
                chars = repetition(char, lo, hi, add_rule=self._add_rule)
                return self._add_rule(rule_name, r'"\"" ' + chars + r' "\"" space')
        if kind is None and not has_props and not keys & STRUCTURE:
            return self._any_value(rule_name)
        return super().visit(schema, name)

    def _array(self, schema, items, name, rule_name):
        lo, hi = counts(schema, "minItems", "maxItems")
        if items in ({}, True) and not lo and hi is None:
            return self._add_primitive("root" if rule_name == "root" else "array", lg.PRIMITIVE_RULES["array"])
        item = self.visit(items, f"{name}{'-' if name else ''}item")
        body = repetition(item, lo, hi, '"," space', self._add_rule)
        return self._add_rule(rule_name, f'"[" space {body} "]" space')

    def _all_of(self, parts, name, rule_name):
        """llama.cpp's _visit_all_of: the object parts' properties merged, `$ref`s followed,
        the values every enum part shares; one part alone is that part."""
        if not isinstance(parts, list) or not parts:
            raise ValueError("allOf must be a non-empty list of schemas")
        if len(parts) == 1:
            return self.visit(parts[0], name)
        props, required, enums = [], set(), {}

        def add(part, is_required, depth=0):
            if not isinstance(part, dict) or depth > 32:
                return
            if "$ref" in part:
                return add(self._refs.get(part["$ref"]), is_required, depth + 1)
            for k, v in (part.get("properties") or {}).items():
                props.append((k, v))
                if is_required:
                    required.add(k)
            for v in part.get("enum") or ():
                lit = self._generate_constant_rule(v)
                enums[lit] = enums.get(lit, 0) + 1

        for part in parts:
            if isinstance(part, dict) and isinstance(part.get("anyOf"), list):
                for alt in part["anyOf"]:
                    add(alt, False)
            else:
                add(part, True)
        shared = [lit for lit, n in enums.items() if n == len(parts)]
        if shared:
            return self._add_rule(rule_name, "(" + " | ".join(shared) + ") space")
        return self._add_rule(rule_name, self._build_object_rule(props, required, name, None))

    def resolve_refs(self, schema, url):
        """Every `$ref` into the same document made absolute (`url#/...`) and its target kept,
        wherever it is: the Python one skipped what only a `$ref` reaches, so a `$ref` at the
        top (pydantic's recursive models) left its target's own `$ref`s unresolved. JSON
        pointers as llama.cpp reads them (array indices too, and ~0 ~1); no fetching."""
        def target(ref):
            node = schema
            for sel in ref.split("#", 1)[1].split("/")[1:]:
                sel = sel.replace("~1", "/").replace("~0", "~")
                if isinstance(node, list) and sel.isdigit() and int(sel) < len(node):
                    node = node[int(sel)]
                elif isinstance(node, dict) and sel in node:
                    node = node[sel]
                else:
                    raise ValueError(f"cannot resolve $ref {ref}: {sel} not found")
            return node

        def walk(n):
            if isinstance(n, list):
                for x in n:
                    walk(x)
            elif isinstance(n, dict):
                ref = n.get("$ref")
                if isinstance(ref, str) and not ref.startswith(f"{url}#/"):
                    if not ref.startswith("#/"):
                        raise ValueError(f"unsupported $ref {ref}: only references into the same document")
                    n["$ref"] = ref = f"{url}{ref}"
                if isinstance(ref, str) and ref not in self._refs:
                    self._refs[ref] = target(ref)
                for v in n.values():
                    walk(v)

        walk(schema)
        return schema

    def _resolve_ref(self, ref):
        """llama.cpp's: the rule is named from the ref's whole fragment (and document, when
        resolve_refs was given one other than json_schema_to_gbnf's "stdin")."""
        doc, _, frag = ref.rpartition("#")
        ref_name = lg.INVALID_RULE_CHARS_RE.sub("-", "ref" + ("" if doc in ("", "stdin") else "-" + doc) + frag)
        if ref_name not in self._rules and ref not in self._refs_being_resolved:
            self._refs_being_resolved.add(ref)
            ref_name = self.visit(self._refs[ref], ref_name)
            self._refs_being_resolved.discard(ref)
        return ref_name

    def _build_object_rule(self, properties, required, name, additional_properties):
        """llama.cpp's _build_object_rule, in the Python converter's spacing and order."""
        order = self._prop_order
        props = [kv for _, kv in sorted(enumerate(properties), key=lambda ikv: (order.get(ikv[1][0], len(order)),
                                                                                ikv[0]))]
        sub = f"{name}-" if name else ""
        kv_rules = {}
        for prop_name, prop_schema in properties:
            value = self.visit(prop_schema, f"{sub}{prop_name}")
            kv_rules[prop_name] = self._add_rule(
                f"{sub}{prop_name}-kv", f'{self._format_literal(json.dumps(prop_name))} space ":" space {value}')
        req = [k for k, _ in props if k in required]
        opt = [k for k, _ in props if k not in required]
        if additional_properties is True or isinstance(additional_properties, dict):
            value = self.visit(additional_properties, f"{sub}additional-value")
            key = (self._add_rule(f"{sub}additional-k", self._not_strings([k for k, _ in props])) if props
                   else self._add_primitive("string", lg.PRIMITIVE_RULES["string"]))
            kv_rules["*"] = self._add_rule(f"{sub}additional-kv", f'{key} ":" space {value}')
            opt.append("*")
        if not req and not opt:
            return '"{" space "}" space'

        def refs(ks, first_optional):
            k, kv = ks[0], kv_rules[ks[0]]
            comma = f'( "," space {kv} )'
            if first_optional:
                res = comma + ("*" if k == "*" else "?")
            else:
                res = kv + (f" {comma}*" if k == "*" else "")
            if len(ks) > 1:
                res += " " + self._add_rule(f"{sub}{k}-rest", refs(ks[1:], True))
            return res

        rule = '"{" space ' + ' "," space '.join(kv_rules[k] for k in req)
        if opt:
            alts = " | ".join(refs(opt[i:], False) for i in range(len(opt)))
            rule += f' ( "," space ( {alts} ) )?' if req else f" ({alts} )?"
        return rule + ' "}" space'

    def _not_strings(self, names):
        """A JSON string (and space) that is none of `names` (as json.dumps writes them):
        llama.cpp's, over a trie of their characters."""
        char = self._add_primitive("char", lg.PRIMITIVE_RULES["char"])
        trie: dict = {}
        for s in names:
            node = trie
            for ch in json.dumps(s)[1:-1]:
                node = node.setdefault(ch, {})
            node[""] = {}

        def cls(ch):
            return ch if ch.isalnum() or ord(ch) > 127 else f"\\x{ord(ch):02X}"

        def alts(node):
            out = []
            for ch, child in node.items():
                if not ch:
                    continue
                if set(child) - {""}:
                    out.append(f"[{cls(ch)}] ({alts(child)})" + ("" if "" in child else "?"))
                else:
                    out.append(f"[{cls(ch)}] {char}+")
            rejects = "".join(cls(ch) for ch in node if ch)
            out.append(f'[^{NOT_JSON}{rejects}] {char}*')
            if "\\" not in node:
                out.append(rf'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{{4}}) {char}*')
            return " | ".join(out)

        return rf'"\"" ( {alts(trie)} ){"" if "" in trie else "?"} "\"" space'


def converter() -> SchemaConverter:
    """A converter as json_schema_to_gbnf makes one (no fetching, no property order)."""
    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def schema_to_gbnf(schema: dict) -> str:
    """GBNF for JSON that satisfies `schema` (not changed: the converter works on a copy).
    An empty schema at the top is any JSON object, as llama-cpp-python makes it."""
    schema = json.loads(json.dumps(schema)) or {"type": "object"}
    conv = converter()
    conv.visit(conv.resolve_refs(schema, "stdin"), "")
    return conv.format_grammar()
