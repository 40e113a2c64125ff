"""Run settings (moeviz/settings.py) and llama.cpp's samplers they drive, on the demo
model: each setting reaches its sampler (an effect only that sampler has), grammars
constrain what is generated and bad ones are refused with one line, never an abort."""
import re
import subprocess
import sys

import pytest

from moeviz.demo import default_model_path
from moeviz.engine import Engine, Finished, SamplingSettings, SettingsError, TokenRouted
from moeviz.errors import UserError
from moeviz.llama.grammar import GrammarError, check_gbnf, grammar_for, json_schema_grammar
from moeviz.settings import BY_NAME, SAMPLING, SETTINGS, from_message, to_json

PROMPT = "def fibonacci(n):"


@pytest.fixture(scope="module")
def demo():
    e = Engine(default_model_path(), n_ctx=512)
    yield e
    e.close()


def generated(engine, prompt=PROMPT, **kw) -> tuple[list[int], str, str]:
    ids, text, reason = [], "", None
    for ev in engine.generate(prompt, SamplingSettings(**kw)):
        if isinstance(ev, TokenRouted):
            ids.append(ev.token.id)
            text += ev.token.text
        elif isinstance(ev, Finished):
            reason = ev.reason
    return ids, text, reason


# The schema ---------------------------------------------------------------------------
def test_sampling_settings_are_the_schema():
    s = SamplingSettings()
    assert [f for f in s.__dataclass_fields__] == [x.name for x in SAMPLING]
    assert all(getattr(s, x.name) == x.default for x in SAMPLING)
    table = to_json()
    assert [t["name"] for t in table] == [x.name for x in SETTINGS]
    assert {t["name"]: t["drives"] for t in table}["min_p"] == "llama_sampler_init_min_p"
    assert all(t["trace"] == f"settings.{t['name']}" for t in table)


@pytest.mark.parametrize("bad, message", [
    ({"min_p": 1.5}, "'min_p' must be a number from 0 to 1, got 1.5"),
    ({"top_p": 0}, "'top_p' must be a number above 0 and up to 1, got 0"),
    ({"repeat_last_n": -2}, "'repeat_last_n' must be an integer from -1 to 2147483647, got -2"),
    ({"top_k": 1.5}, "'top_k' must be an integer from 0 to 2147483647, got 1.5"),
    ({"temperature": True}, "'temperature' must be a number from 0 to 10, got True"),
    ({"seed": 10**400}, "'seed' must be an integer from 0 to 4294967295"),
    ({"stop": [""]}, "'stop' must be a non-empty string or a list of them"),
    ({"logit_bias": {"5": 300}}, "the bias of 5 must be a number from -100 to 100"),
    ({"logit_bias": "x"}, "'logit_bias' must be an object"),
])
def test_out_of_range_settings_name_the_field(bad, message):
    with pytest.raises(SettingsError) as e:
        SamplingSettings(**bad).validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_request_fields_by_name_or_alias():
    assert from_message({"temp": 0.5, "n_predict": 9, "typ_p": 0.5}) == {"temperature": 0.5, "max_tokens": 9,
                                                                         "typical_p": 0.5}
    with pytest.raises(SettingsError, match="'temperature' and 'temp' are the same setting"):
        from_message({"temperature": 0.5, "temp": 0.2})
    # OpenAI's {"id": bias}, llama-server's [[id or text, bias or false]]: one list form
    assert from_message({"logit_bias": {"15": -100, "return": 2}})["logit_bias"] == [[15, -100.0], ["return", 2.0]]
    assert from_message({"logit_bias": [[7, False]]})["logit_bias"] == [[7, False]]


def test_cli_flags_come_from_the_schema(tmp_path):
    from moeviz.cli import build_parser

    args = build_parser().parse_args(["record", "--prompt", "x", "-o", "t.json", "--min-p", "0.2", "--typical-p",
                                      "0.9", "--repeat-penalty", "1.1", "--repeat-last-n", "-1"])
    assert (args.min_p, args.typical_p, args.repeat_penalty, args.repeat_last_n) == (0.2, 0.9, 1.1, -1)
    from moeviz.cli import settings_from_args

    biased = build_parser().parse_args(["record", "--prompt", "x", "-o", "t.json", "--logit-bias", " return=false",
                                        "--logit-bias", "5=-2.5"])
    assert settings_from_args(biased).logit_bias == [[" return", False], [5, -2.5]]
    export = build_parser().parse_args(["export", "-o", "site", "--min-p", "0"])
    assert export.min_p == 0.0 and export.temperature == BY_NAME["temperature"].default
    r = subprocess.run([sys.executable, "-m", "moeviz", "record", "--prompt", "x", "-o", str(tmp_path / "t.json"),
                        "--min-p", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().endswith("argument --min-p: 'min_p' must be a number from 0 to 1, "
                                                           "got 3.0")


# Each setting reaches its llama.cpp sampler ----------------------------------------------
def test_min_p_one_keeps_only_the_most_likely_token(demo):
    greedy = generated(demo, max_tokens=16, temperature=0.0)
    for seed in (1, 2):
        sampled = generated(demo, max_tokens=16, temperature=1.5, seed=seed, top_k=0, top_p=1.0, min_p=0.0)
        assert sampled != greedy          # sampling at 1.5 leaves the greedy path...
        only_top = generated(demo, max_tokens=16, temperature=1.5, seed=seed, top_k=0, top_p=1.0, min_p=1.0)
        assert only_top == greedy         # ...min_p = 1 keeps the top token alone


@pytest.mark.slow
def test_top_n_sigma_near_zero_keeps_only_the_top_logit_and_the_others_run(demo):
    greedy = generated(demo, max_tokens=16, temperature=0.0)
    assert generated(demo, max_tokens=16, temperature=1.5, seed=4, top_k=0, top_p=1.0, min_p=0.0,
                     top_n_sigma=1e-6) == greedy
    for kw in ({"xtc_probability": 1.0, "xtc_threshold": 0.1}, {"dynatemp_range": 0.5, "dynatemp_exponent": 2.0}):
        ids, _, reason = generated(demo, max_tokens=8, temperature=0.8, seed=4, **kw)
        assert len(ids) == 8 and reason == "length" and (ids, _, reason) != greedy


@pytest.mark.slow
def test_typical_p_near_zero_keeps_one_token_whatever_the_seed(demo):
    runs = [generated(demo, max_tokens=12, temperature=1.5, seed=seed, top_k=0, top_p=1.0, min_p=0.0, typical_p=1e-6)
            for seed in (1, 2, 3)]
    free = [generated(demo, max_tokens=12, temperature=1.5, seed=seed, top_k=0, top_p=1.0, min_p=0.0)
            for seed in (1, 2, 3)]
    assert runs[0] == runs[1] == runs[2] and len({tuple(r[0]) for r in free}) > 1


@pytest.mark.slow
def test_logit_bias_by_id_and_by_text(demo):
    ids, _, _ = generated(demo, max_tokens=6, temperature=0.0)
    banned, _, _ = generated(demo, max_tokens=6, temperature=0.0, logit_bias=[[ids[0], False]])
    assert banned[0] != ids[0]
    forced, _, _ = generated(demo, max_tokens=5, temperature=0.0, logit_bias={str(ids[3]): 100})
    assert forced == [ids[3]] * 5
    word = demo.lm.tokenize(" fish", add_special=False, parse_special=False)
    by_text, _, _ = generated(demo, max_tokens=4, temperature=0.0, logit_bias=[[" fish", 100]])
    assert set(by_text) <= set(word)
    with pytest.raises(UserError, match="not in this model's vocabulary"):
        generated(demo, max_tokens=2, temperature=0.0, logit_bias=[[10**9, 1]])


@pytest.mark.slow
def test_repeat_penalty_cuts_repeats(demo):
    def repeats(ids):
        return len(ids) - len(set(ids))

    plain, _, _ = generated(demo, max_tokens=40, temperature=0.0)
    penalized, _, _ = generated(demo, max_tokens=40, temperature=0.0, repeat_penalty=3.0, repeat_last_n=64)
    presence, _, _ = generated(demo, max_tokens=40, temperature=0.0, presence_penalty=2.0, frequency_penalty=2.0)
    assert repeats(penalized) < repeats(plain) and repeats(presence) < repeats(plain)
    off, _, _ = generated(demo, max_tokens=40, temperature=0.0, repeat_penalty=3.0, repeat_last_n=0)
    assert off == plain               # repeat_last_n 0: the penalties look at nothing
    # past the context: the whole context (-1), not a 2^31-token ring buffer in llama.cpp
    whole, _, _ = generated(demo, max_tokens=40, temperature=0.0, repeat_penalty=3.0, repeat_last_n=-1)
    assert generated(demo, max_tokens=40, temperature=0.0, repeat_penalty=3.0, repeat_last_n=2**31 - 1)[0] == whole


def test_the_trace_records_every_setting(demo):
    from moeviz.record import record

    trace = record(demo, PROMPT, SamplingSettings(max_tokens=3, temperature=0.0, min_p=0.1, repeat_penalty=1.2,
                                                  logit_bias=[["x", False]], grammar='root ::= [a-z ]+'))
    assert {k: trace.settings[k] for k in ("min_p", "repeat_penalty", "logit_bias", "grammar")} == {
        "min_p": 0.1, "repeat_penalty": 1.2, "logit_bias": [["x", False]], "grammar": "root ::= [a-z ]+"}
    trace.validate()


# Grammars -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_grammar_constrains_every_run(demo):
    g = 'root ::= "[" [0-9]+ ("," " "? [0-9]+)* "]"'
    for seed in (1, 2, 3):
        ids, text, reason = generated(demo, max_tokens=40, temperature=1.0, seed=seed, grammar=g)
        assert re.fullmatch(r"\[[0-9]+(, ?[0-9]+)*\]", text) and reason == "eos", text
    _, text, reason = generated(demo, max_tokens=40, temperature=0.0, grammar='root ::= "yes" | "no"')
    assert text in ("yes", "no") and reason == "eos"


@pytest.mark.parametrize("bad, message", [
    # syntax errors name llama.cpp's reason and where (patches/0060 logs what its parser printed to stderr)
    ('root ::= (', "not valid GBNF: expecting ')' at line 1, column 11 (the end)"),
    ('root ::= "a"\nx ::= "b\\q" "c"\ny ::= "d"\n', "not valid GBNF: unknown escape at line 2, column 9 (near '\\\\q\" \"c\"')"),
    ('root ::= "a" )', "not valid GBNF: expecting newline or end at line 1, column 14 (near ')')"),
    ('other ::= "x"', "grammar does not contain a 'root' symbol"),
    ('root ::= root "a"', "left recursion"),
    ('root ::= x', "not valid GBNF: Undefined rule identifier 'x'"),
    ("root ::= " + "(" * 500 + '"a"' + ")" * 500, "nests groups 500 deep; the limit is 100"),
    ("root ::= \"a\x00\"", "NUL"),
    ("", "non-empty GBNF"),
])
def test_bad_grammars_are_one_line_errors(demo, bad, message):
    with pytest.raises(GrammarError) as e:
        generated(demo, max_tokens=2, grammar=bad) if bad else check_gbnf(bad)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert generated(demo, max_tokens=2, temperature=0.0)[2] == "length"   # the engine goes on


def test_a_grammar_no_token_can_follow_ends_the_run_with_an_error(demo):
    """`<[id]>` names a token id; one past the vocabulary can never be sampled: llama.cpp
    would accept a token the grammar rejects (and abort); moeviz stops the run instead."""
    with pytest.raises(UserError, match="the grammar allows none of this model's tokens"):
        generated(demo, max_tokens=4, temperature=0.0, grammar=f"root ::= <[{demo.lm.n_vocab + 5}]>")
    assert generated(demo, max_tokens=2, temperature=0.0)[2] == "length"


def test_json_schemas_become_grammars_through_llama_cpp_python():
    from llama_cpp import llama_grammar

    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    assert json_schema_grammar(schema) == llama_grammar.json_schema_to_gbnf(__import__("json").dumps(schema))
    assert grammar_for(any_json=True) == llama_grammar.JSON_GBNF
    assert grammar_for(gbnf='root ::= "a"') == 'root ::= "a"'
    with pytest.raises(GrammarError, match="cannot be turned into a grammar"):
        json_schema_grammar({"$ref": "#/definitions/missing"})
    with pytest.raises(GrammarError, match="must be an object"):
        json_schema_grammar([1])


def test_a_json_schema_run_gives_json_that_fits(demo):
    import json

    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                               "count": {"type": "integer"}},
              "required": ["answer", "count"], "additionalProperties": False}
    _, text, reason = generated(demo, max_tokens=60, temperature=0.0, grammar=json_schema_grammar(schema))
    value = json.loads(text)
    assert reason == "eos" and value["answer"] in ("yes", "no") and isinstance(value["count"], int)


def test_a_trace_setting_of_the_wrong_type_is_named(demo):
    from moeviz.record import record
    from moeviz.trace.schema import TraceFormatError, validate_header

    header = record(demo, PROMPT, SamplingSettings(max_tokens=1, temperature=0.0)).header()
    for field, bad, message in (("min_p", "high", "settings.min_p must be a number"),
                                ("repeat_last_n", 1.5, "settings.repeat_last_n must be an integer"),
                                ("grammar", 3, "settings.grammar must be a string"),
                                ("logit_bias", [1, 2], "settings.logit_bias must be a list of [token, bias] pairs")):
        with pytest.raises(TraceFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
            validate_header({**header, "settings": {**header["settings"], field: bad}})
    validate_header({**header, "settings": {k: v for k, v in header["settings"].items() if k != "min_p"}})  # older
