"""Chat templates render as transformers and llama.cpp render them.

Every template llama.cpp vendors (models/templates/, real models' templates)
renders user-only, system+user and multi-turn conversations with every message
in it, or refuses the shape for its own stated reason, in one line. The
templates are read straight out of the llama-cpp-python sdist that
`make setup` caches, so CI needs no llama.cpp checkout.
"""
import datetime
import os
import tarfile
from pathlib import Path

import pytest

from moeviz.engine.chat_template import template_variables
from moeviz.engine.text import PromptError, render_chat

VERSION = "0.3.36"
TEMPLATES_DIR = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/models/templates/"


def sdist_path() -> Path:
    # The cache directory exactly as patches/build-llama-cpp.sh finds it
    # (${MOEVIZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moeviz}: empty means unset).
    cache = os.environ.get("MOEVIZ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "moeviz")
    return Path(cache) / "sdist" / f"llama_cpp_python-{VERSION}.tar.gz"


def vendored_templates() -> dict[str, str]:
    path = sdist_path()
    if not path.is_file():
        return {}
    out = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.startswith(TEMPLATES_DIR) and m.name.endswith(".jinja"):
                out[m.name[len(TEMPLATES_DIR):]] = tf.extractfile(m).read().decode()
    return out


TEMPLATES = vendored_templates()
NO_SDIST = pytest.mark.skipif(not TEMPLATES,
                              reason=f"the llama-cpp-python sdist is not at {sdist_path()} (run `make setup`)")

# Contents with non-ASCII and HTML-special characters: a template must pass them through as is.
USER1, USER2 = "First question: größe 🙂 <b>&amp;", "Second question, après"
SHAPES = {
    "user": [{"role": "user", "content": USER1}],
    "system+user": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": USER1}],
    "multi-turn": [{"role": "user", "content": USER1}, {"role": "assistant", "content": "The first answer."},
                   {"role": "user", "content": USER2}],
    # Not required of a template; here so that the "roles must alternate" refusals are exercised too.
    "user+user": [{"role": "user", "content": USER1}, {"role": "user", "content": USER2}],
}
ALTERNATE = "conversation roles must alternate user/assistant/user/assistant/..."
# (template, shape) -> the reason the template itself gives (its raise_exception text).
REFUSALS = {
    ("google-gemma-2-2b-it.jinja", "system+user"): "System role not supported",
    ("google-gemma-2-2b-it.jinja", "user+user"): ALTERNATE.capitalize(),
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "user+user"): "After the optional system message, " + ALTERNATE,
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "user+user"): "After the optional system message, " + ALTERNATE,
    ("mistralai-Ministral-3-14B-Reasoning-2512.jinja", "user+user"):
        "After the optional system message, conversation roles must alternate user and assistant roles except for "
        "tool calls and results.",
}


def render(source, messages, **options):
    return render_chat(source, messages, "<s>", "</s>", **options)


@NO_SDIST
def test_the_sdist_holds_the_vendored_templates():
    assert len(TEMPLATES) >= 70
    for name in ("openai-gpt-oss-120b.jinja", "Cohere2MoE.jinja", "LFM2.5-8B-A1B.jinja", "Kimi-K3.jinja"):
        assert name in TEMPLATES


@NO_SDIST
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TEMPLATES) or ["(none)"])
def test_every_vendored_template_renders_or_refuses_for_its_own_reason(name, shape):
    messages = SHAPES[shape]
    reason = REFUSALS.get((name, shape))
    if reason is not None:
        with pytest.raises(PromptError) as e:
            render(TEMPLATES[name], messages)
        assert str(e.value) == f"the model's chat template refuses these messages: {reason}"
        return
    text = render(TEMPLATES[name], messages)
    # Every message's content is in the prompt, in the conversation's order.
    at = 0
    for m in messages:
        at = text.find(m["content"], at)
        assert at >= 0, f"{m['role']} content missing (or out of order) in {text!r}"
        at += len(m["content"])


def test_strftime_now_is_the_local_time():
    before = datetime.datetime.now().strftime("%Y-%m-%d")
    text = render("{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %B %Y') != '' }}", SHAPES["user"])
    after = datetime.datetime.now().strftime("%Y-%m-%d")
    assert text.split("|")[0] in (before, after) and text.endswith("|True")


def test_loop_controls():
    src = ("{% for m in messages %}{% if m.role == 'assistant' %}{% continue %}{% endif %}"
           "{{ m.content[:6] }};{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}")
    assert render(src, SHAPES["multi-turn"] + [{"role": "user", "content": "never shown"}]) == "First ;Second;"


def test_generation_tag_renders_its_body():
    src = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}"
           "{% if loop.last %}{% break %}{% endif %}]{% endgeneration %}{% else %}{{ m.role }} {% endif %}{% endfor %}")
    assert render(src, SHAPES["multi-turn"]) == "user [The first answer.]user "


def test_tojson_writes_json_as_json_dumps_does():
    msgs = [{"role": "user", "content": "größe <b> & 'x'"}]
    assert render("{{ messages[0] | tojson }}", msgs) == '{"role": "user", "content": "größe <b> & \'x\'"}'
    assert render("{{ messages[0] | tojson(indent=2) }}", msgs) == (
        '{\n  "role": "user",\n  "content": "größe <b> & \'x\'"\n}')
    assert render("{{ messages[0] | tojson(separators=(',', ':'), sort_keys=true) }}", msgs) == (
        '{"content":"größe <b> & \'x\'","role":"user"}')
    assert render("{{ messages[0].content | tojson(ensure_ascii=true) }}", msgs) == '"gr\\u00f6\\u00dfe <b> & \'x\'"'


def test_variables_templates_read():
    src = ("{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ enable_thinking }}|"
           "{{ tools is defined }}|{{ reasoning_effort | default('unset') }}|{{ date_string != '' }}")
    assert render(src, SHAPES["user"]) == "<s>|</s>|True|True|False|unset|True"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    src = "{{ tools[0].function.name }}|{{ reasoning_effort }}|{{ enable_thinking }}|{{ add_generation_prompt }}"
    out = render(src, SHAPES["user"], tools=tools, reasoning_effort="low", enable_thinking=False,
                 add_generation_prompt=False)
    assert out == "f|low|False|False"
    assert template_variables([], tools=tools)["functions"].startswith('[\n  {\n    "type": "function"')


@NO_SDIST
def test_thinking_and_effort_reach_real_templates():
    qwen3 = TEMPLATES["Qwen-Qwen3-0.6B.jinja"]
    assert "<think>\n\n</think>" in render(qwen3, SHAPES["user"], enable_thinking=False)
    assert "<think>" not in render(qwen3, SHAPES["user"])
    gpt_oss = TEMPLATES["openai-gpt-oss-120b.jinja"]
    assert "Reasoning: medium" in render(gpt_oss, SHAPES["user"])      # the template's own default
    assert "Reasoning: high" in render(gpt_oss, SHAPES["user"], reasoning_effort="high")
    assert datetime.date.today().strftime("%Y-%m-%d") in render(gpt_oss, SHAPES["user"])  # strftime_now


@pytest.mark.parametrize("src, expect", [
    ("{{ raise_exception('No system\nmessages, sorry') }}",
     "the model's chat template refuses these messages: No system messages, sorry"),
    ("line one\n{% for m in messages %}{{ m.content }}", "the model's chat template does not parse (line 2): "),
    ("a\n\n{{ messages[0].content + 1 }}", "the model's chat template failed at line 3: TypeError: "),
    ("{{ ''.__class__.__mro__ }}", "the model's chat template failed at line 1: SecurityError: "),
    # The sandbox is still the immutable one: a template cannot change the messages.
    ("{% set x = [] %}{{ x.append(1) }}", "the model's chat template failed at line 1: SecurityError: "),
])
def test_template_failures_are_one_line(src, expect):
    with pytest.raises(PromptError) as e:
        render(src, SHAPES["user"])
    msg = str(e.value)
    assert msg.startswith(expect)
    assert "\n" not in msg and "Traceback" not in msg and "/" not in msg.replace("user/assistant", "")
