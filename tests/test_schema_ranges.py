"""JSON schemas become grammars that hold (moeviz/llama/schema_grammar.py, schema_ranges.py):
integer minimum / maximum as llama.cpp's C++ converter writes them, and what llama-cpp-python's
Python converter dropped or got wrong. Checked with llama.cpp's own grammar engine: a text is
fed token by token (the demo model's vocabulary) through llama.cpp's grammar sampler
(moeviz/llama/sampler.py's make_grammar_sampler and SamplerChain._apply, the calls a run
makes: each token is offered alone, accepted only if allowed, then the end of generation),
and must be accepted iff it satisfies the schema. Then a real `moeviz serve` answers in range
through the official openai client."""
import json
import random

import numpy as np
import pytest
from serverproc import ServerProcess

from moeviz.demo import default_model_path
from moeviz.llama.grammar import GrammarError, json_schema_grammar
from moeviz.llama.lib import llama_cpp
from moeviz.llama.model import LoadedModel
from moeviz.llama.sampler import TOKEN_DATA, SamplerChain, make_grammar_sampler
from moeviz.llama.schema_ranges import int_range


@pytest.fixture(scope="module")
def lm():
    m = LoadedModel(default_model_path(), n_ctx=256, n_batch=64, n_threads=1, n_gpu_layers=0)
    yield m
    m.close()


class Grammar:
    """llama.cpp's grammar sampler for `gbnf` on the model's vocabulary, parsed once; each
    text runs on a clone."""

    def __init__(self, lm, gbnf: str):
        self.lm, self.gbnf = lm, gbnf
        self.eos = llama_cpp().llama_vocab_eos(lm.vocab)

    def __enter__(self):
        self.base = make_grammar_sampler(self.lm.vocab, self.gbnf)
        return self

    def __exit__(self, *exc):
        llama_cpp().llama_sampler_free(self.base)

    def accepts(self, text: str) -> bool:
        lc = llama_cpp()
        g = lc.llama_sampler_clone(self.base)
        try:
            for tok in self.lm.tokenize(text, add_special=False, parse_special=False) + [self.eos]:
                one = np.array([(tok, 0.0, 0.0)], TOKEN_DATA)
                SamplerChain._apply(g, one)
                if not np.isfinite(one["logit"][0]):
                    return False
                if tok != self.eos:
                    lc.llama_sampler_accept(g, tok)
            return True
        finally:
            lc.llama_sampler_free(g)


def accepted(lm, schema, texts) -> dict:
    with Grammar(lm, json_schema_grammar(schema)) as g:
        return {t: g.accepts(t) for t in texts}


# Integer ranges -----------------------------------------------------------------------------
# llama.cpp's own expectations (tests/test-json-schema-to-grammar.cpp in the pinned sdist):
# the same rule shapes, character for character
LLAMA_CPP_SHAPES = [
    (0, None, '[0] | [1-9] [0-9]{0,15}'),
    (1, None, '[1-9] [0-9]{0,15}'),
    (3, None, '[1-2] [0-9]{1,15} | [3-9] [0-9]{0,15}'),
    (9, None, '[1-8] [0-9]{1,15} | [9] [0-9]{0,15}'),
    (10, None, '[1] ([0-9]{1,15}) | [2-9] [0-9]{1,15}'),
    (25, None, '[1] [0-9]{2,15} | [2] ([0-4] [0-9]{1,14} | [5-9] [0-9]{0,14}) | [3-9] [0-9]{1,15}'),
    (None, 30, '"-" [1-9] [0-9]{0,15} | [0-9] | ([1-2] [0-9] | [3] "0")'),
    (-5, None, '"-" ([0-5]) | [0] | [1-9] [0-9]{0,15}'),
    (-123, None, '"-" ([0-9] | ([1-8] [0-9] | [9] [0-9]) | "1" ([0-1] [0-9] | [2] [0-3])) | [0] | [1-9] [0-9]{0,15}'),
    (None, 1, '"-" [1-9] [0-9]{0,15} | [0-1]'),
    (None, 100, '"-" [1-9] [0-9]{0,15} | [0-9] | ([1-8] [0-9] | [9] [0-9]) | "100"'),
    (0, 23, '[0-9] | ([1] [0-9] | [2] [0-3])'),
    (15, 300, '([1] ([5-9]) | [2-9] [0-9]) | ([1-2] [0-9]{2} | [3] "00")'),
    (5, 30, '[5-9] | ([1-2] [0-9] | [3] "0")'),
    (-123, 42, '"-" ([0-9] | ([1-8] [0-9] | [9] [0-9]) | "1" ([0-1] [0-9] | [2] [0-3])) | [0-9] | ([1-3] [0-9] | '
               '[4] [0-2])'),
    (-10, 10, '"-" ([0-9] | "10") | [0-9] | "10"'),
    (-12, 207, '"-" ([0-9] | "1" [0-2]) | [0-9] | ([1-8] [0-9] | [9] [0-9]) | ([1] [0-9]{2} | [2] "0" [0-7])'),
    (12, 207, '([1] ([2-9]) | [2-9] [0-9]) | ([1] [0-9]{2} | [2] "0" [0-7])'),
]


@pytest.mark.parametrize("lo, hi, shape", LLAMA_CPP_SHAPES)
def test_integer_ranges_have_llama_cpp_rule_shapes(lo, hi, shape):
    assert int_range(lo, hi) == shape
    schema = {"type": "integer", **({"minimum": lo} if lo is not None else {}),
              **({"maximum": hi} if hi is not None else {})}
    assert f"root ::= ({shape}) space" in json_schema_grammar(schema).splitlines()


def test_where_llama_cpp_slips_the_rules_differ():
    """llama.cpp writes "max -5" as "-" ([0-4] ...): "-05" (not JSON); "min 100" as
    [1] ([0-9]{1,15}) | ...: 15 passes; "min 110" leaves 1000-1099 out."""
    assert int_range(None, -5) == '"-" ([1-4] [0-9]{1,15} | [5-9] [0-9]{0,15})'
    assert int_range(100, None) == '[1] ([0-9]{2,15}) | [2-9] [0-9]{2,15}'
    assert int_range(110, None) == '[1] ([0] [0-9]{2,14} | [1] ([0-9]{1,14}) | [2-9] [0-9]{1,14}) | [2-9] [0-9]{2,15}'


FIXED = [(0, 0), (0, 9), (-9, 0), (-1, 1), (10, 99), (100, 1000), (-1000, -100), (7, 7), (-7, -7), (0, 10**12),
         (-10**12, 10**12), (10**12, 10**12 + 5), (10**12 - 3, 10**12 + 3), (-10**12 - 7, -10**12 + 7), (19, 21),
         (99, 101), (-101, -99), (999, 10001), (10**17, 10**17 + 3), (None, 0), (0, None), (None, -1), (1, None),
         (100, None), (105, None), (110, None), (200, None), (1000, None), (1050, None), (None, -100), (None, -105),
         (None, 999), (-10**12, None), (None, 10**12), (10**12, None), (None, -10**12), (123456789012345, None),
         (10**15, None), (None, -10**15), (-3, None), (None, 3), (-100, None), (None, 100)]


def _random_bound(rng):
    digits = rng.choice([1, 1, 2, 2, 3, 4, 5, 7, 9, 13])
    n = rng.randrange(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits)
    return -n if rng.random() < 0.4 else n


def _ranges():
    rng = random.Random(20240)
    out = list(FIXED)
    for _ in range(45):
        out.append(tuple(sorted((_random_bound(rng), _random_bound(rng)))))
    out += [(_random_bound(rng), None) for _ in range(12)] + [(None, _random_bound(rng)) for _ in range(12)]
    return out


def _schema(lo, hi, style: int) -> dict:
    """The range said three ways: inclusive, exclusive, fractional (rounded inwards; only
    where a float holds the bound exactly)."""
    if style == 2 and max(abs(lo or 0), abs(hi or 0)) >= 2**50:
        style = 0
    s = {"type": "integer"}
    if lo is not None:
        s.update([("minimum", lo), ("exclusiveMinimum", lo - 1), ("minimum", lo - 0.75)][style:style + 1])
    if hi is not None:
        s.update([("maximum", hi), ("exclusiveMaximum", hi + 1), ("maximum", hi + 0.25)][style:style + 1])
    return s


def _candidates(lo, hi, rng) -> set[int]:
    near = {0, 1, -1, 9, -9, 10, -10}
    for k in range(1, 16):
        near |= {10**k, 10**k - 1, 10**k + 1, -10**k, -(10**k - 1), -(10**k + 1)}
    for b in (lo, hi):
        if b is not None:
            lead = int(str(abs(b))[0] + "0" * (len(str(abs(b))) - 1))      # 4000 for 4321
            near |= {b + d for d in range(-3, 4)} | {b // 10, b * 10, -b, b + 1000, b - 1000, lead, -lead}
    if lo is not None and hi is not None:
        if hi - lo <= 300:
            near |= set(range(lo - 12, hi + 13))
        near |= {rng.randint(lo, hi) for _ in range(8)}
    else:
        near |= {rng.randint(-10**15, 10**15) for _ in range(8)}
    return near


def test_every_integer_in_and_around_a_range_is_accepted_iff_in_it(lm):
    """~110 ranges (closed, open, negative, zero, 10**12, over 16 digits), each said three ways,
    and the integers at and around their bounds, inside and beyond: accepted exactly when in
    the range. An open side writes at most 16 digits (llama.cpp's, as its plain `integer`);
    leading zeros and "+" never (not JSON); "-0" is 0."""
    rng = random.Random(7)
    checked = 0
    for i, (lo, hi) in enumerate(_ranges()):
        schema = _schema(lo, hi, i % 3)
        nums = _candidates(lo, hi, rng)
        if lo is None or hi is None:
            nums = {n for n in nums if len(str(abs(n))) <= 16}
        texts = {str(n): (lo is None or n >= lo) and (hi is None or n <= hi) for n in nums}
        inside = [n for n in nums if texts[str(n)]]
        for n in inside[:3]:
            texts["0" + str(n) if n >= 0 else "-0" + str(-n)] = False     # leading zeros
            texts["+" + str(n) if n >= 0 else "--" + str(-n)] = False
        if texts.get("0") is False:
            texts["-0"] = False                  # in range, "-0" may be written (it is 0, and JSON)
        with Grammar(lm, json_schema_grammar(schema)) as g:
            got = {t: g.accepts(t) for t in texts}
        wrong = {t: got[t] for t in texts if got[t] != texts[t]}
        assert not wrong, f"{schema}: accepted? {wrong}"
        checked += len(texts)
        if i % 4 == 0:       # the same range as an object's property, then in an array
            obj = {"type": "object", "properties": {"n": schema}, "required": ["n"]}
            some = list(texts.items())[:40]
            with Grammar(lm, json_schema_grammar(obj)) as g:
                assert {t: g.accepts('{"n": %s}' % t) for t, _ in some} == dict(some), obj
            arr = {"type": "array", "items": schema, "minItems": 2, "maxItems": 2}
            ins = [t for t, ok in some if ok][:2]
            outs = [t for t, ok in some if not ok][:1]
            with Grammar(lm, json_schema_grammar(arr)) as g:
                assert all(g.accepts(f"[{a}, {b}]") for a in ins for b in ins)
                assert not any(g.accepts(f"[{a}, {b}]") for a in ins for b in outs)
    assert checked > 5000


def test_open_sides_write_16_digits_or_as_many_as_the_bound(lm):
    """An open side stops at 16 digits, as llama.cpp's (and its plain `integer` rule); a bound
    with more digits gets as many as it has."""
    e16, e17 = 10**16, 10**17
    for schema, texts in (({"minimum": 0}, {e16 - 1: True, e16: False}),
                          ({"maximum": 0}, {-(e16 - 1): True, -e16: False}),
                          ({"minimum": e17}, {e17: True, e17 * 9: True, e17 * 10: False, e17 - 1: False}),
                          ({"maximum": -e17}, {-e17: True, -e17 * 9: True, -e17 * 10: False, -e17 + 1: False})):
        got = accepted(lm, {"type": "integer", **schema}, [str(n) for n in texts])
        assert got == {str(n): ok for n, ok in texts.items()}, schema


def test_bounds_are_read_as_llama_cpp_reads_them(lm):
    cases = [({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, 1, 9),
             ({"minimum": 1.5, "maximum": 4.5}, 2, 4),
             ({"exclusiveMinimum": 1.5, "exclusiveMaximum": 4.5}, 2, 4),
             ({"minimum": 3, "exclusiveMinimum": 5}, 6, None),                    # both: the tighter
             ({"minimum": 0, "exclusiveMinimum": True, "maximum": 5, "exclusiveMaximum": True}, 1, 4),  # draft 4
             ({"minimum": 0, "exclusiveMinimum": False}, 0, None),
             ({"minimum": -2.5}, -2, None)]
    for bounds, lo, hi in cases:
        ok = accepted(lm, {"type": "integer", **bounds}, [str(n) for n in range(-5, 12)])
        assert [int(t) for t, a in ok.items() if a] == [n for n in range(-5, 12)
                                                         if n >= lo and (hi is None or n <= hi)], bounds


@pytest.mark.parametrize("schema, message", [
    ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer is at least 5 and at most 4"),
    ({"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 5}, "no integer is at least 5 and at most 4"),
    ({"type": "integer", "minimum": "3"}, "minimum must be a finite number"),
    ({"type": "integer", "maximum": None}, "maximum must be a finite number"),
    ({"type": "string", "minLength": -1}, "minLength must be a non-negative integer"),
    ({"type": "array", "minItems": 3, "maxItems": 2}, "minItems 3 is more than maxItems 2"),
    ({"type": "string", "pattern": "^(?=a)b$"}, "has no grammar form"),
    ({"type": "string", "pattern": "^\\bword$"}, "has no grammar form"),
    ({"type": "string", "pattern": "(((("}, "pattern /((((/ is not a valid regular expression: missing )"),
    ({"type": "string", "pattern": "^[a-z$"}, "is not a valid regular expression: unterminated character set"),
])
def test_impossible_or_malformed_schemas_are_one_line_errors(schema, message):
    with pytest.raises(GrammarError, match="cannot be turned into a grammar") as e:
        json_schema_grammar(schema)
    assert message in str(e.value) and "\n" not in str(e.value)


# What else llama.cpp's converter enforces (and the Python one dropped or got wrong) -----------
X = "x" * 300
CASES = {
    # name: (schema, accepted texts, refused texts)
    "integer range in a type list (the list dropped the bounds)": (
        {"type": ["integer", "null"], "minimum": 1, "maximum": 3}, ["1", "3", "null"], ["0", "4", '"1"']),
    "enum in a type list (the list dropped the enum)": (
        {"type": ["string", "null"], "enum": ["a", None]}, ['"a"', "null"], ['"b"']),
    "raw control characters in a string (not JSON)": (
        {"type": "string"}, ['"a\\nb"', '"a\\u0009b"'], ['"a\nb"', '"a\tb"']),
    "literals with backslashes, quotes, newlines (backspace; broken grammar)": (
        {"enum": ["a\\b", 'q"r', "c\nd"]}, [json.dumps("a\\b"), json.dumps('q"r'), json.dumps("c\nd")],
        ['"a\\b"', '"c\nd"']),
    "maxLength over 100 (refused: a group per character)": (
        {"type": "string", "minLength": 2, "maxLength": 300}, ['"ab"', f'"{X}"'], ['"a"', f'"{X}x"']),
    "maxItems over 100 (refused: a group per item)": (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 150},
        ["[1]", "[" + ", ".join(["1"] * 150) + "]"], ["[]", "[" + ", ".join(["1"] * 151) + "]"]),
    "additionalProperties true beside properties (no comma; objects only)": (
        {"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "string"}},
         "additionalProperties": True},
        ['{"a": 1, "b": 2}', '{"a": 1, "b": [true], "c": null}', '{"x": "s"}', "{}", '{"abc": 1}', '{"": 0}'],
        ['{"a": 1, "a": "s"}', '{"a": "s"}', '{"a": 1 "b": 2}', '{"b": 1, "ab": 2}', '{"a": 1, "ab": 2, "ab": 3}']),
    "additional keys may be a declared name's prefix (llama.cpp refuses them)": (
        {"type": "object", "properties": {"abc": {"type": "integer"}}, "required": ["abc"],
         "additionalProperties": {"type": "integer"}},
        ['{"abc": 1, "ab": 2}', '{"abc": 1, "abcd": 2}'], ['{"abc": 1, "abc": 2}', '{"abc": 1, "ab": "s"}']),
    "{} and annotation-only schemas are any value (objects only; refused)": (
        {"type": "object", "properties": {"x": {"description": "any"}, "y": {}}, "required": ["x", "y"]},
        ['{"x": 1, "y": "s"}', '{"x": [1], "y": null}', '{"x": {"k": 2}, "y": 1.5}'], ['{"x": 1}']),
    "items {} (refused)": ({"type": "array", "items": {}}, ['[1, "a", null, {}]', "[]"], ["{}"]),
    "$ref rules named from the whole path (two refs shared one rule)": (
        {"$defs": {"A": {"properties": {"x": {"enum": [1, 2]}}}, "B": {"properties": {"x": {"enum": ["s"]}}},
                   "answer": {"enum": [7]}},
         "type": "object", "properties": {"answer": {"enum": ["yes"]}, "a": {"$ref": "#/$defs/A/properties/x"},
                                          "b": {"$ref": "#/$defs/B/properties/x"}, "n": {"$ref": "#/$defs/answer"}},
         "required": ["answer", "a", "b", "n"]},
        ['{"answer": "yes", "a": 1, "b": "s", "n": 7}'],
        ['{"answer": "yes", "a": 1, "b": 1, "n": 7}', '{"answer": "yes", "a": 1, "b": "s", "n": "yes"}']),
    "a $ref at the top, as pydantic writes recursive models (refused: inner refs unresolved)": (
        {"$defs": {"Node": {"type": "object", "required": ["v"], "properties": {
            "v": {"type": "integer", "minimum": 0}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
         "$ref": "#/$defs/Node"},
        ['{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]}', '{"v": 0}'],
        ['{"v": -1}', '{"v": 1, "kids": [{"v": -2}]}']),
    "allOf of a $ref to an enum (an empty object)": (
        {"$defs": {"E": {"enum": ["a", "b"]}}, "allOf": [{"$ref": "#/$defs/E"}]}, ['"a"', '"b"'], ["{}", '"c"']),
    "allOf of enums: their common values (llama.cpp's)": (
        {"$defs": {"E": {"enum": ["a", "b"]}}, "allOf": [{"$ref": "#/$defs/E"}, {"enum": ["b", "c"]}]},
        ['"b"'], ['"a"', '"c"', "{}"]),
    "pattern alternation inside the quotes (one side left the quotes)": (   # read as ^(a|b)$, as both
        {"type": "string", "pattern": "^a|b$"}, ['"a"', '"b"'], ['"c"', '"a', 'b"']),   # converters read it
    "pattern \\d and escaped dots (refused)": (
        {"type": "string", "pattern": "^\\d{3}-\\d{4}\\.\\d+$"}, ['"555-1234.5"'],
        ['"55-1234.5"', '"555-1234x5"', '"555-12345"']),
    "pattern (?: groups (refused)": ({"type": "string", "pattern": "^(?:ab)+$"}, ['"abab"'], ['"aba"', '""']),
    "unanchored pattern matches anywhere (refused; llama.cpp: any string)": (
        {"type": "string", "pattern": "[0-9]"}, ['"a1b"', '"7"'], ['"abc"', '""']),
    "pattern dot and negated class write no raw quote or newline": (
        {"type": "object", "properties": {"p": {"pattern": "^.+$"}, "q": {"pattern": "^[^a]+$"}},
         "required": ["p", "q"]},
        ['{"p": "a b", "q": "bcd"}'], ['{"p": "a"b", "q": "b"}', '{"p": "a\nb", "q": "b"}', '{"p": "a", "q": "b"c"}',
                                       '{"p": "a", "q": "bad"}']),
    "pattern quotes and \\s are written as JSON escapes": (
        {"type": "string", "pattern": '^say "\\w+"\\s!$'}, ['"say \\"hi\\" !"', '"say \\"hi\\"\\t!"'],
        ['"say "hi" !"', '"say \\"hi\\"\t!"']),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schemas_llama_cpp_enforces_hold(lm, name):
    schema, good, bad = CASES[name]
    got = accepted(lm, schema, good + bad)
    assert got == {**{t: True for t in good}, **{t: False for t in bad}}


def _duplicate_keys(text: str) -> bool:
    dup = []

    def pairs(kv):
        dup.append(len({k for k, _ in kv}) < len(kv))
        return dict(kv)

    json.loads(text, object_pairs_hook=pairs)
    return any(dup)


def test_the_cases_agree_with_a_validator():
    """The cases' own lists, read by a JSON schema validator: every text accepted is JSON the
    schema validates; every text refused is not JSON, has a key twice, or fails the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    for name, (schema, good, bad) in CASES.items():
        v = jsonschema.Draft202012Validator(schema)
        assert all(v.is_valid(json.loads(t)) for t in good), name
        for t in bad:
            try:
                value = json.loads(t)
            except json.JSONDecodeError:
                continue
            assert _duplicate_keys(t) or not v.is_valid(value), (name, t)


def test_counts_past_llama_cpps_repetition_limit_hold(lm):
    """llama.cpp's parser reads {0,5000} as no limit (its MAX_REPETITION_THRESHOLD, 2000), so
    its own converter's maxLength 5000 is not enforced; here larger counts go in blocks."""
    x = lambda n: '"' + "x" * n + '"'      # noqa: E731
    assert accepted(lm, {"type": "string", "minLength": 2500, "maxLength": 4500},
                    [x(2499), x(2500), x(3999), x(4500), x(4501), x(6000)]) == {
        x(2499): False, x(2500): True, x(3999): True, x(4500): True, x(4501): False, x(6000): False}
    ones = lambda n: "[" + ",".join(["1"] * n) + "]"      # noqa: E731
    assert accepted(lm, {"type": "array", "items": {"const": 1}, "maxItems": 2345}, [ones(2345), ones(2346)]) == {
        ones(2345): True, ones(2346): False}


@pytest.mark.parametrize("gbnf, message", [
    ('root ::= [0-9]{3,2}', "the maximum is below the minimum"),      # llama.cpp's parser: loops until OOM
    ('root ::= "a"{0,3000}', "llama.cpp's limit is 2000"),              # llama.cpp: no limit at all
])
def test_grammar_repetitions_llama_cpp_mishandles_are_refused(gbnf, message):
    from moeviz.llama.grammar import check_gbnf

    with pytest.raises(GrammarError, match=message):
        check_gbnf(gbnf)
    assert check_gbnf('root ::= "{3,2}" [{] "a"{2,3}')      # braces in literals and classes are text


def test_schemas_without_the_fixed_keywords_convert_as_llama_cpp_python_does():
    from llama_cpp import llama_grammar

    for schema in ({"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                                       "count": {"type": "integer"}},
                    "required": ["answer", "count"], "additionalProperties": False},
                   {"type": "object", "properties": {"d": {"type": "string", "format": "date"},
                                                     "u": {"type": "string", "format": "uuid"},
                                                     "b": {"type": "boolean"}, "x": {"type": "number"}},
                    "required": ["d"]},
                   {"anyOf": [{"type": "integer"}, {"type": "null"}]}):
        assert json_schema_grammar(schema) == llama_grammar.json_schema_to_gbnf(json.dumps(schema))


def test_a_pydantic_models_constraints_hold(lm):
    """Field(ge=, le=, gt=, lt=, max_length=, min_length=) as pydantic writes them (anyOf with
    null for Optional, $defs and $ref for nested models)."""
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=5)
        qty: int = pydantic.Field(ge=1, le=99)
        rating: int | None = pydantic.Field(default=None, gt=0, lt=6)
        tags: list[str] = pydantic.Field(default_factory=list, max_length=2)

    class Order(pydantic.BaseModel):
        items: list[Item] = pydantic.Field(min_length=1)

    def order(**item):
        return json.dumps({"items": [{"name": "x", "qty": 5, **item}]})

    texts = {order(): True, order(qty=99, rating=5, tags=["a", "b"]): True, order(rating=None): True,
             order(qty=0): False, order(qty=100): False, order(rating=0): False, order(rating=6): False,
             order(name="toolong"): False, order(tags=["a", "b", "c"]): False, '{"items": []}': False}
    assert accepted(lm, Order.model_json_schema(), list(texts)) == texts
    for t, ok in texts.items():
        try:
            Order.model_validate_json(t)
            assert ok, t
        except pydantic.ValidationError:
            assert not ok, t


def test_number_bounds_are_not_enforced_as_in_llama_cpp(lm):
    """llama.cpp's converter reads minimum / maximum for integers only; so does moeviz."""
    assert accepted(lm, {"type": "number", "minimum": 0, "maximum": 1}, ["0.5", "7", "-2.5"]) == {
        "0.5": True, "7": True, "-2.5": True}


# End to end ---------------------------------------------------------------------------------
def test_a_server_answers_within_the_schemas_integer_ranges(tmp_path):
    """Structured output through the official openai client against a real server: every
    sampled answer is in range (chat completions and the Responses API), while the same
    request without the bounds (same seeds) does leave them: the grammar did the work."""
    openai = pytest.importorskip("openai")
    props = {"n": {"type": "integer", "minimum": -3, "maximum": 5},
             "big": {"type": "integer", "exclusiveMinimum": 10**6, "maximum": 10**12}}
    schema = {"type": "object", "properties": props, "required": ["n", "big"], "additionalProperties": False}
    loose = {**schema, "properties": {k: {"type": "integer"} for k in props}}
    ask = [{"role": "user", "content": "Pick two numbers."}]
    with ServerProcess("--n-ctx", "1024", "--data-dir", tmp_path / "runs") as server, \
            openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as client:
        def answers(s, seed):
            fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": s, "strict": True}}
            r = client.chat.completions.create(model="demo", messages=ask, response_format=fmt, n=8, seed=seed,
                                               temperature=1.5, max_tokens=80)
            return [json.loads(c.message.content) for c in r.choices if c.finish_reason == "stop"]

        bounded = answers(schema, 11) + answers(schema, 99)
        assert len(bounded) >= 12
        assert all(-3 <= a["n"] <= 5 and 10**6 < a["big"] <= 10**12 for a in bounded), bounded
        free = answers(loose, 11) + answers(loose, 99)
        assert any(not (-3 <= a["n"] <= 5 and 10**6 < a["big"] <= 10**12) for a in free), free
        resp = client.responses.create(model="demo", input="Pick two numbers.", temperature=1.5, max_output_tokens=80,
                                       text={"format": {"type": "json_schema", "name": "pick", "schema": schema}})
        value = json.loads(resp.output_text)
        assert -3 <= value["n"] <= 5 and 10**6 < value["big"] <= 10**12
