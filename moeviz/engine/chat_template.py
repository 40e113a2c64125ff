"""The jinja environment chat templates are written for.

Model authors write chat templates against Hugging Face transformers'
environment (``_compile_jinja_template``), and llama.cpp's own jinja engine
copies it. Plain jinja2 lacks several of its pieces, so a real template fails to
render without them: ``strftime_now`` (gpt-oss, Mistral Small 3.2, Granite),
``{% break %}``/``{% continue %}`` (Cohere2MoE, Kimi), the ``{% generation %}``
tag (LFM2.5, Laguna) and a ``tojson`` that takes ``indent``/``separators`` and
keeps non-ASCII text as is. The sandbox stays: a GGUF's template is untrusted.
"""
from __future__ import annotations

import datetime
import functools
import json

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRaised(Exception):
    """The template called ``raise_exception``: it refuses these messages, for its own reason."""


class GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` renders its body.

    transformers uses the tag only to find which characters the assistant wrote
    (for training masks); a prompt needs nothing but the text.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def raise_exception(message):
    raise TemplateRaised(str(message))


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # jinja2's own tojson escapes <, >, & and ' for HTML and takes no separators:
    # a prompt wants the JSON text exactly as json.dumps writes it.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader(),
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    return env


@functools.lru_cache(maxsize=8)
def compile_template(source: str) -> jinja2.Template:
    """The parsed template (cached: a server renders the same one for every request)."""
    return environment().from_string(source)


def template_variables(messages, *, add_generation_prompt=True, bos_token="", eos_token="", tools=None,
                       enable_thinking=True, reasoning_effort=None, **extra) -> dict:
    """What llama.cpp gives a template to read (``common_chat_template_direct_apply``).

    ``tools`` and ``reasoning_effort`` stay undefined unless given, as in llama.cpp:
    templates test ``reasoning_effort is defined`` to pick their own default, and
    the tool-use templates (Hermes, Command R+) loop over ``tools`` unguarded,
    which fails on transformers' None; every other vendored template renders the
    same for undefined and None. enable_thinking is on, llama.cpp's default.
    ``date_string``/``datetime`` are llama.cpp's extra context (Llama 3.x writes the
    date into its system header). ``functions`` is the tools' JSON that
    FireFunction v2 concatenates into its system prompt, as llama.cpp gave it.
    ``extra``: a request's other ``chat_template_kwargs``, given as they are (llama.cpp
    merges them into the context the same way).
    """
    now = datetime.datetime.now()
    out = {"messages": messages, "add_generation_prompt": add_generation_prompt, "bos_token": bos_token,
           "eos_token": eos_token, "enable_thinking": enable_thinking,
           "date_string": now.strftime("%d %b %Y"), "datetime": now.strftime("%b %d %Y"),
           "functions": json.dumps(tools, indent=2) if tools else ""}
    if tools is not None:
        out["tools"] = tools
    if reasoning_effort is not None:
        out["reasoning_effort"] = reasoning_effort
    for k, v in extra.items():
        out.setdefault(k, v)
    return out
