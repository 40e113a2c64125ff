"""The MoE families' tool calls llama.cpp parses with its newer parsers: Kimi K3, MiniMax-M3, Tencent Hy3,
Ling 3.0, StepFun 3.5 Flash, GigaChat 3 / 3.1, poolside Laguna, ByteDance Seed-OSS, Nemotron Nano v2.

Each real template (llama.cpp's models/templates/, read from the sdist as test_chat_templates does) is
rendered with tools through render.plan_chat and detected as llama.cpp detects it; model output in its
syntax is parsed, whole and streamed in small pieces, to the message llama.cpp's parser gives. The
expected messages are llama.cpp's own: the vendored common/chat.cpp (common_chat_templates_apply, then
common_chat_peg_parse of the output) built and run on the same template, tools and text. Whole conversations
(StepFun's messages trimmed, Hy3's and LFM2.5's own rendering of earlier calls) render to llama.cpp's prompt.
"""
import json

import pytest
from test_chat_templates import NO_SDIST, TEMPLATES
from test_tools import HISTORY, TOOLS, USER, collect, demo_lm  # noqa: F401 - demo_lm: the fixture

from moeviz.engine.toolcalls import StreamParser, chat_prompt, detect, plan_chat

NS = "]<]minimax[>["
H = ":opensource"
EDIT = {"type": "function", "function": {"name": "edit_file", "description": "Edit a file", "parameters": {
    "type": "object", "properties": {
        "path": {"type": "string"},
        "edits": {"type": "array", "items": {"type": "object", "properties": {
            "old": {"type": "string"}, "new": {"type": "string"}, "line": {"type": "integer"}}, "required": ["old", "new"]}},
        "options": {"type": "object", "properties": {"dry_run": {"type": "boolean"},
                                                    "tags": {"type": "array", "items": {"type": "string"}}}}},
    "required": ["path", "edits"]}}}
LIMITS = {"type": "function", "function": {"name": "set_limits", "parameters": {"type": "object", "properties": {
    "limit": {"oneOf": [{"type": "integer"}, {"type": "object", "properties": {"max": {"type": "integer"}}}]},
    "label": {"anyOf": [{"type": "string"}, {"type": "object"}]}}}}}
ALL_TOOLS = [*TOOLS, EDIT, LIMITS]
# nested JSON, strings holding the markers' characters (and a whole closing tag)
NESTED = {"path": "src/a<b>.py", "edits": [{"old": 'x = "</tool_call>"', "new": "y = '<|sep|>'", "line": 3}],
          "options": {"dry_run": True, "tags": ["a", "b"]}}
EDITS_JSON, OPTIONS_JSON = json.dumps(NESTED["edits"]), json.dumps(NESTED["options"])
W, T = ("get_weather", {"city": 'Pa"ris <|x|>', "days": 2}), ("get_time", {"zone": "CET"})
# JSON arguments whose strings hold a family's tags (a coding agent's file contents)
EDITS_TAGS = [{"old": "</arg_value>\n<arg_key>", "new": "</tool_call>", "line": 3}]
EDITS_PARAMS = [{"old": "</parameter>\n<parameter=x>", "new": "</function></tool_call>", "line": 3}]


def k3_call(name, i, *args):
    a = "".join(f'<|open|>argument key="{k}" type="{t}"<|sep|>{v}<|close|>argument<|sep|>' for k, t, v in args)
    return f'<|open|>call tool="{name}" index="{i}"<|sep|>{a}<|close|>call<|sep|>'


def m3_el(k, v):
    return f"{NS}<{k}>{v}{NS}</{k}>"


def m3_calls(*calls):
    return f"{NS}<tool_call>\n" + "".join(f'{NS}<invoke name="{name}">' + "".join(els) + f"{NS}</invoke>\n"
                                          for name, *els in calls) + f"{NS}</tool_call>"


def hy3_calls(*calls):
    return f"<tool_calls{H}>\n" + "".join(
        f"<tool_call{H}>{name}<tool_sep{H}>\n"
        + "".join(f"<arg_key{H}>{k}</arg_key{H}>\n<arg_value{H}>{v}</arg_value{H}>\n" for k, v in kv)
        + f"</tool_call{H}>\n" for name, *kv in calls) + f"</tool_calls{H}>"


def seed_call(name, *kv):
    return f"<seed:tool_call>\n<function={name}>\n" + "".join(f"<parameter={k}>{v}</parameter>\n" for k, v in kv) \
        + "</function>\n</seed:tool_call>"


def glm_call(name, *kv, sep="\n"):
    return f"<tool_call>{name}{sep}" + "".join(f"<arg_key>{k}</arg_key>{sep}<arg_value>{v}</arg_value>{sep}"
                                               for k, v in kv) + "</tool_call>"


def coder_call(name, *kv):
    return f"<tool_call>\n<function={name}>\n" + "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in kv) \
        + "</function>\n</tool_call>"


def json_list(*calls):
    return ", ".join(json.dumps({"name": n, "arguments": a}) for n, a in calls)


def fn_call(name, args):
    return f"<function={name}>{json.dumps(args)}</function>"


def cpm_call(name, *kv):
    return f'<function name="{name}">' + "".join(f'<param name="{k}">{v}</param>' for k, v in kv) + "</function>"


# (case, template, chat_template_kwargs, model output, (content, reasoning, calls)): the message is
# llama.cpp's for that output after that template's prompt
CASES = [
    ("kimi-k3 reasoning, content, two calls", "Kimi-K3.jinja", {},
     "The user wants weather.<|close|>think<|sep|><|open|>response<|sep|>Let me look that up.<|close|>response<|sep|>"
     "<|open|>tools<|sep|>" + k3_call("get_weather", 1, ("city", "string", 'Pa"ris <|x|>'), ("days", "number", "2"))
     + k3_call("get_time", 2, ("zone", "string", "CET")) + "<|close|>tools<|sep|><|close|>message<|sep|>",
     ("Let me look that up.", "The user wants weather.", [W, T])),
    ("kimi-k3 nested JSON arguments, no response section", "Kimi-K3.jinja", {},
     "Edit it.<|close|>think<|sep|><|open|>tools<|sep|>" + k3_call(
         "edit_file", 1, ("path", "string", "src/a<b>.py"), ("edits", "array", EDITS_JSON),
         ("options", "object", OPTIONS_JSON)) + "<|close|>tools<|sep|><|close|>message<|sep|>",
     ("", "Edit it.", [("edit_file", NESTED)])),
    ("kimi-k3 thinking off: the prompt opened the response, a string schema keeps digits text", "Kimi-K3.jinja",
     {"thinking": False},
     "Checking.<|close|>response<|sep|><|open|>tools<|sep|>" + k3_call("get_time", 1, ("zone", "number", "2"))
     + "<|close|>tools<|sep|><|close|>message<|sep|>",
     ("Checking.", "", [("get_time", {"zone": "2"})])),
    ("kimi-k3 truncated in the reasoning", "Kimi-K3.jinja", {}, "Still thinking when the budget ran out",
     ("", "Still thinking when the budget ran out", [])),
    ("minimax-m3 reasoning, content, two calls", "MiniMax-M3.jinja", {},
     "<mm:think>The user wants weather.</mm:think>Let me look that up." + m3_calls(
         ("get_weather", m3_el("city", 'Pa"ris <|x|>'), m3_el("days", "2")), ("get_time", m3_el("zone", "CET"))),
     ("Let me look that up.", "The user wants weather.", [W, T])),
    ("minimax-m3 nested values expanded in elements", "MiniMax-M3.jinja", {},
     "</mm:think>" + m3_calls((
         "edit_file", m3_el("path", "src/a<b>.py"),
         m3_el("edits", m3_el("item", m3_el("old", 'x = "</tool_call>"') + m3_el("new", "y = '<|sep|>'")
                              + m3_el("line", "3"))),
         m3_el("options", m3_el("dry_run", "true") + m3_el("tags", m3_el("item", "a") + m3_el("item", "b"))))),
     ("", "", [("edit_file", NESTED)])),
    ("minimax-m3 unions: the first alternative that reads; one that may be a string takes the text",
     "MiniMax-M3.jinja", {},
     "</mm:think>Setting limits." + m3_calls(
         ("set_limits", m3_el("limit", m3_el("max", "10")), m3_el("label", m3_el("text", "hi"))),
         ("set_limits", m3_el("limit", "5"))),
     ("Setting limits.", "", [("set_limits", {"limit": {"max": 10}, "label": f"{NS}<text>hi{NS}</text>"}),
                              ("set_limits", {"limit": 5})])),
    ("minimax-m3 a turn without reasoning opens with </mm:think>", "MiniMax-M3.jinja", {},
     "</mm:think>Just text, <b>no</b> call.", ("Just text, <b>no</b> call.", "", [])),
    ("hy3 content, then two calls", "tencent-Hy3.jinja", {},
     "Let me look that up." + hy3_calls(("get_weather", ("city", 'Pa"ris <|x|>'), ("days", "2")),
                                        ("get_time", ("zone", "CET"))),
     ("Let me look that up.", "", [W, T])),
    ("hy3 nested JSON arguments", "tencent-Hy3.jinja", {},
     hy3_calls(("edit_file", ("path", "src/a<b>.py"), ("edits", EDITS_JSON), ("options", OPTIONS_JSON))),
     ("", "", [("edit_file", NESTED)])),
    ("hy3 reasoning_effort high: the prompt opened the reasoning", "tencent-Hy3.jinja", {"reasoning_effort": "high"},
     f"The user wants weather.</think{H}>On it." + hy3_calls(("get_time", ("zone", "CET"))),
     ("On it.", "The user wants weather.", [T])),
    ("seed-oss reasoning, content, two calls", "ByteDance-Seed-OSS.jinja", {},
     "<seed:think>The user wants weather.</seed:think>\nLet me look that up.\n"
     + seed_call("get_weather", ("city", 'Pa"ris <|x|>'), ("days", "2")) + "\n" + seed_call("get_time", ("zone", "CET")),
     ("Let me look that up.", "The user wants weather.", [W, T])),
    ("seed-oss nested JSON; a string keeps its newline", "ByteDance-Seed-OSS.jinja", {},
     seed_call("edit_file", ("path", "src/a<b>.py\n"), ("edits", EDITS_JSON), ("options", OPTIONS_JSON)),
     ("", "", [("edit_file", {**NESTED, "path": "src/a<b>.py\n"})])),
    ("ling3 reasoning, content, two calls", "inclusionai-ling-3.0-flash.jinja", {},
     "The user wants weather.\n</think>\nLet me look that up.\n"
     + glm_call("get_weather", ("city", 'Pa"ris </think> <tool_call>'), ("days", "2")) + "\n"
     + glm_call("get_time", ("zone", "CET")),
     ("Let me look that up.", "The user wants weather.",
      [("get_weather", {"city": 'Pa"ris </think> <tool_call>', "days": 2}), T])),
    ("ling3 a call ends an unclosed reasoning", "inclusionai-ling-3.0-flash.jinja", {},
     "I need to edit it.\n" + glm_call("edit_file", ("path", "src/a<b>.py"), ("edits", EDITS_JSON),
                                       ("options", OPTIONS_JSON)),
     ("", "I need to edit it.", [("edit_file", NESTED)])),
    ("ling3 thinking off, text after the call", "inclusionai-ling-3.0-flash.jinja", {"enable_thinking": False},
     glm_call("get_time", ("zone", "CET"), sep="") + "\nThe time has been checked.",
     ("The time has been checked.", "", [T])),
    ("nemotron-v2 reasoning, content, two calls", "NVIDIA-Nemotron-Nano-v2.jinja", {},
     "The user wants weather.\n</think>\nLet me look that up.\n<TOOLCALL>[" + json_list(W, T) + "]</TOOLCALL>",
     ("Let me look that up.", "The user wants weather.", [W, T])),
    ("nemotron-v2 nested JSON, the closing marker in a string, two blocks", "NVIDIA-Nemotron-Nano-v2.jinja", {},
     "Edit.</think><TOOLCALL>[" + json_list(("edit_file", {**NESTED, "path": "</TOOLCALL>"})) + "]</TOOLCALL>\n"
     "<TOOLCALL>[" + json_list(T) + "]</TOOLCALL>",
     ("", "Edit.", [("edit_file", {**NESTED, "path": "</TOOLCALL>"}), T])),
    ("gigachat3.1 content, then a call", "GigaChat3.1-10B-A1.8B.jinja", {},
     "Let me look that up.<|function_call|>" + json_list(("get_weather", {"city": 'Pa"ris <|function_call|>', "days": 2})),
     ("Let me look that up.", "", [("get_weather", {"city": 'Pa"ris <|function_call|>', "days": 2})])),
    ("gigachat3.1 nested JSON", "GigaChat3.1-10B-A1.8B.jinja", {},
     "<|function_call|>" + json_list(("edit_file", NESTED)), ("", "", [("edit_file", NESTED)])),
    ("gigachat3 content, then a call message", "GigaChat3-10B-A1.8B.jinja", {},
     "Let me look that up.<|message_sep|>\n\nfunction call<|role_sep|>\n" + json_list(("edit_file", NESTED)),
     ("Let me look that up.", "", [("edit_file", NESTED)])),
    ("gigachat3 two call messages: llama.cpp reads the first (max_calls = 1)", "GigaChat3-10B-A1.8B.jinja", {},
     "Let me look that up." + "".join("<|message_sep|>\n\nfunction call<|role_sep|>\n" + json_list(c) for c in (W, T)),
     ("Let me look that up.", "", [W])),
    ("stepfun a call ends an unclosed reasoning", "StepFun3.5-Flash.jinja", {},
     "I need the weather.\n" + coder_call("get_weather", ("city", 'Pa"ris </think> <parameter=x>'), ("days", "2"))
     + "\n" + coder_call("get_time", ("zone", "CET")),
     ("", "I need the weather.", [("get_weather", {"city": 'Pa"ris </think> <parameter=x>', "days": 2}), T])),
    ("stepfun reasoning, content, nested JSON", "StepFun3.5-Flash.jinja", {},
     "Edit it.\n</think>\nOn it.\n" + coder_call("edit_file", ("path", "src/a<b>.py"), ("edits", EDITS_JSON),
                                                  ("options", OPTIONS_JSON)),
     ("On it.", "Edit it.", [("edit_file", NESTED)])),
    ("laguna-s tight tags, nested JSON", "poolside-Laguna-S-2.1.jinja", {},
     "The user wants weather.</think>Let me look that up.\n"
     + glm_call("get_weather", ("city", 'Pa"ris <arg_key>'), ("days", "2"), sep="")
     + glm_call("edit_file", ("path", "src/a<b>.py"), ("edits", EDITS_JSON), ("options", OPTIONS_JSON), sep=""),
     ("Let me look that up.", "The user wants weather.",
      [("get_weather", {"city": 'Pa"ris <arg_key>', "days": 2}), ("edit_file", NESTED)])),
    ("laguna-xs thinking off", "poolside-Laguna-XS-2.1.jinja", {"enable_thinking": False},
     "Let me look that up.\n" + glm_call("get_time", ("zone", "CET")) + "\n" + glm_call("get_time", ("zone", "UTC")),
     ("Let me look that up.", "", [T, ("get_time", {"zone": "UTC"})])),
    # a string value holding its closing tag or the call's: llama.cpp reads a value up to the template's
    # value suffix (GLM-4.6, Hy3: the closing tag and a newline; Qwen3-Coder: "\n</parameter>\n"), the
    # call's close after its values
    ("glm-4.6 string values holding </tool_call> and </arg_value>", "GLM-4.6.jinja", {},
     "Let me look that up.\n" + glm_call("get_weather", ("city", "a </tool_call> b"), ("days", "2")) + "\n"
     + glm_call("edit_file", ("path", "x</arg_value>y </arg_value> z"), ("edits", json.dumps(EDITS_TAGS))),
     ("Let me look that up.", "", [("get_weather", {"city": "a </tool_call> b", "days": 2}),
                                    ("edit_file", {"path": "x</arg_value>y </arg_value> z", "edits": EDITS_TAGS})])),
    ("glm-4.7 tight tags, a value holding </tool_call>", "GLM-4.7-Flash.jinja", {},
     "Hm.</think>" + glm_call("get_weather", ("city", "a </tool_call> b"), ("days", "2"), sep="")
     + glm_call("get_time", ("zone", "CET"), sep=""),
     ("", "Hm.", [("get_weather", {"city": "a </tool_call> b", "days": 2}), T])),
    ("qwen3-coder string values holding </parameter> and </tool_call>", "Qwen3-Coder.jinja", {},
     "Let me look that up.\n" + coder_call("get_weather", ("city", "p </parameter> q </tool_call> r")) + "\n"
     + coder_call("edit_file", ("path", "</function></tool_call>\n</parameter> x"), ("edits", json.dumps(EDITS_PARAMS))),
     ("Let me look that up.", "", [("get_weather", {"city": "p </parameter> q </tool_call> r"}),
                                    ("edit_file", {"path": "</function></tool_call>\n</parameter> x", "edits": EDITS_PARAMS})])),
    ("stepfun a value holding </parameter>", "StepFun3.5-Flash.jinja", {},
     "Hm.\n</think>\n" + coder_call("get_weather", ("city", "x</parameter>y"), ("days", "2")),
     ("", "Hm.", [("get_weather", {"city": "x</parameter>y", "days": 2})])),
    ("seed-oss a value holding </parameter> and </seed:tool_call>", "ByteDance-Seed-OSS.jinja", {},
     seed_call("get_weather", ("city", "x</parameter>y </seed:tool_call>"), ("days", "2")) + "\n"
     + seed_call("get_time", ("zone", "CET")),
     ("", "", [("get_weather", {"city": "x</parameter>y </seed:tool_call>", "days": 2}), T])),
    ("hy3 a value holding its closing tags", "tencent-Hy3.jinja", {},
     hy3_calls(("get_weather", ("city", f"x</arg_value{H}>y </tool_call{H}>"), ("days", "2")), ("get_time", ("zone", "CET"))),
     ("", "", [("get_weather", {"city": f"x</arg_value{H}>y </tool_call{H}>", "days": 2}), T])),
    # Functionary v3.1, Firefunction v2, Apertus: llama.cpp's autoparser keeps the text before the calls as written
    ("functionary-v3.1 content, two calls, </function> in a string", "meetkai-functionary-medium-v3.1.jinja", {},
     "Let me look that up. \n" + fn_call(*W) + "\n" + fn_call("edit_file", {**NESTED, "path": "</function>"}),
     ("Let me look that up. \n", "", [W, ("edit_file", {**NESTED, "path": "</function>"})])),
    ("functionary-v3.1 nested JSON, calls back to back", "meetkai-functionary-medium-v3.1.jinja", {},
     fn_call("edit_file", NESTED) + fn_call(*T), ("", "", [("edit_file", NESTED), T])),
    ("firefunction-v2 content, two calls", "fireworks-ai-llama-3-firefunction-v2.jinja", {},
     "Let me look that up.\n functools[" + json_list(W, ("edit_file", NESTED)) + "]",
     ("Let me look that up.\n ", "", [W, ("edit_file", NESTED)])),
    ("firefunction-v2 a call only", "fireworks-ai-llama-3-firefunction-v2.jinja", {},
     " functools[" + json_list(T) + "]", ("", "", [T])),
    ("apertus content, two calls", "Apertus-8B-Instruct.jinja", {},
     "Let me look that up.\n<|tools_prefix|>[" + ", ".join(json.dumps({n: a}) for n, a in (W, ("edit_file", NESTED)))
     + "]<|tools_suffix|>", ("Let me look that up.\n", "", [W, ("edit_file", NESTED)])),
    ("apertus a call only", "Apertus-8B-Instruct.jinja", {},
     "<|tools_prefix|>[" + json.dumps({"get_time": {"zone": "CET"}}) + "]<|tools_suffix|>", ("", "", [T])),
    # Functionary v3.2: the prompt ends in ">>>"; llama.cpp reads calls only when the turn opens with one (after
    # "all\n" the rest is content, a later ">>>NAME" included), and calls follow each other without ">>>"
    ("functionary-v3.2 two calls, nested JSON", "meetkai-functionary-medium-v3.2.jinja", {},
     "get_weather\n" + json.dumps(W[1]) + "edit_file\n" + json.dumps(NESTED), ("", "", [W, ("edit_file", NESTED)])),
    ("functionary-v3.2 content: the rest is text", "meetkai-functionary-medium-v3.2.jinja", {},
     "all\nLet me look that up.>>>get_time\n" + json.dumps(T[1]),
     ("Let me look that up.>>>get_time\n" + json.dumps(T[1]), "", [])),
    # MiniCPM5: reasoning and content keep their trailing whitespace; CDATA holds </param>; other values are JSON
    ("minicpm5 reasoning, content, two calls, CDATA", "openbmb-MiniCPM5-1B.jinja", {},
     "The user wants weather.\n</think>\n\nLet me look that up.\n"
     + cpm_call("get_weather", ("city", '<![CDATA[Pa"ris </param> x]]>'), ("days", "2")) + "\n"
     + cpm_call("edit_file", ("path", "<![CDATA[src/a<b>.py</param>]]>"), ("edits", EDITS_JSON), ("options", OPTIONS_JSON)),
     ("Let me look that up.\n", "The user wants weather.\n",
      [("get_weather", {"city": 'Pa"ris </param> x', "days": 2}), ("edit_file", {**NESTED, "path": "src/a<b>.py</param>"})])),
    ("minicpm5 thinking off", "openbmb-MiniCPM5-1B.jinja", {"enable_thinking": False},
     "Text " + cpm_call("get_time", ("zone", "CET")), ("Text ", "", [T])),
    ("minicpm5 no call", "openbmb-MiniCPM5-1B.jinja", {}, "Hm.</think>Just <b>text</b>.\n",
     ("Just <b>text</b>.\n", "Hm.", [])),
    # IBM Granite 3.3: llama.cpp's autoparser finds no call syntax in the template: its <|tool_call|> is content
    ("granite-3.3 reasoning, a call left as content", "ibm-granite-granite-3.3-2B-Instruct.jinja", {},
     "<think>The user wants weather.</think><response>Let me.</response><|tool_call|>[" + json_list(W) + "]",
     ("<response>Let me.</response><|tool_call|>[" + json_list(W) + "]", "The user wants weather.", [])),
]

# template -> (family, what the prompt ends in, whether that opened the reasoning); the prompt's end
# is llama.cpp's generation prompt for the same request
DETECTED = {
    "Kimi-K3.jinja": ("kimi-k3", '<|open|>message role="assistant"<|sep|><|open|>think<|sep|>', True),
    "MiniMax-M3.jinja": ("minimax-m3", "]~b]ai\n", False),
    "tencent-Hy3.jinja": ("hy3", f"<｜hy_Assistant{H}｜><think{H}></think{H}>", False),
    "inclusionai-ling-3.0-flash.jinja": ("ling3", "<role>ASSISTANT</role>\n<think>", True),
    "StepFun3.5-Flash.jinja": ("qwen3-coder", "<|im_start|>assistant\n<think>\n", True),
    "GigaChat3-10B-A1.8B.jinja": ("gigachat3", "assistant<|role_sep|>\n", False),
    "GigaChat3.1-10B-A1.8B.jinja": ("gigachat3", "assistant<|role_sep|>\n", False),
    "poolside-Laguna-S-2.1.jinja": ("glm-4.5", "<assistant><think>", True),
    "poolside-Laguna-XS-2.1.jinja": ("glm-4.5", "<assistant>\n<think>", True),
    "poolside-Laguna-XS.2.jinja": ("glm-4.5", "<assistant>\n<think>", True),
    "ByteDance-Seed-OSS.jinja": ("seed-oss", "<seed:bos>assistant\n", False),
    "NVIDIA-Nemotron-Nano-v2.jinja": ("nemotron-v2", "<SPECIAL_11>Assistant\n<think>\n", True),
    "meetkai-functionary-medium-v3.1.jinja": ("functionary-v3.1", "<|start_header_id|>assistant<|end_header_id|>\n\n", False),
    "meetkai-functionary-medium-v3.2.jinja": ("functionary-v3.2", "<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
                                              False),
    "fireworks-ai-llama-3-firefunction-v2.jinja": ("firefunction-v2", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                                                   False),
    "Apertus-8B-Instruct.jinja": ("apertus", "<|assistant_start|>", False),
    "openbmb-MiniCPM5-1B.jinja": ("minicpm5", "<|im_start|>assistant\n<think>\n", True),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("generic", "<|start_of_role|>assistant<|end_of_role|>", False),
}


def plan_for(name, kwargs=None, tools=ALL_TOOLS, **options):
    # Seed-OSS's template reads every parameter's `type` (a union has none)
    tools = [t for t in tools if t is not LIMITS or "MiniMax" in name]
    return plan_chat(TEMPLATES[name], chat_prompt([USER], tools, chat_template_kwargs=kwargs or {}, **options))


@NO_SDIST
@pytest.mark.parametrize("name", sorted(DETECTED))
def test_each_template_renders_its_tools_and_is_detected_as_llama_cpp_detects_it(name):
    family, prompt_end, opened = DETECTED[name]
    assert detect(TEMPLATES[name]).name == family
    plan = plan_for(name)
    assert plan.family.name == family
    assert "get_weather" in plan.text and "The weather in a city now" in plan.text and "edit_file" in plan.text
    assert plan.text.endswith(prompt_end) and plan.opened is opened


def _parse(plan, text, step):
    p = plan.parser()
    events = [ev for i in range(0, len(text), step) for ev in p.feed(text[i:i + step])] + p.finish()
    return collect(events), p.message()


@NO_SDIST
@pytest.mark.parametrize("case, name, kwargs, text, expected", CASES, ids=[c[0] for c in CASES])
def test_model_output_parses_as_llama_cpp_parses_it(case, name, kwargs, text, expected):
    plan = plan_for(name, kwargs)
    content, reasoning, calls = expected
    for step in (len(text), 1, 3, 7):                # whole, and streamed in pieces
        streamed, msg = _parse(plan, text, step)
        assert (msg.content, msg.reasoning_content or "") == (content, reasoning), step
        assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == calls, step
        assert streamed["calls"] == [[c.name, c.arguments] for c in msg.tool_calls]     # the stream adds up to it
        assert (streamed["content"], streamed["reasoning"]) == (msg.content, msg.reasoning_content or "")
        assert len({c.id for c in msg.tool_calls}) == len(calls) and all(c.id for c in msg.tool_calls)


def test_a_partial_marker_is_held_back_until_the_next_tokens_decide():
    """Text that begins a marker stays out of what is streamed; once it turns out not to be one, it is content."""
    fam = detect('{{ "]<]minimax[>[<tool_call>" }}{{ "<invoke name=" }}')
    assert fam.name == "minimax-m3"
    p = StreamParser(fam, ALL_TOOLS, thinking=True, calls_wanted=True)
    assert collect(p.feed("</mm:think>Use ]<]mini")) == {"content": "Use", "reasoning": "", "calls": []}
    out = collect(p.feed("ature ]<]minimax[>[ bins") + p.finish())
    assert out["content"] == " ]<]miniature ]<]minimax[>[ bins" and p.message().tool_calls == []


# template -> (the assistant turn's opener, its end): the turn the template renders for an earlier call
TURNS = {
    "Kimi-K3.jinja": ('<|open|>message role="assistant"<|sep|>', "<|end_of_msg|>"),
    "MiniMax-M3.jinja": ("]~b]ai\n", "[e~["),
    "tencent-Hy3.jinja": (f"<｜hy_Assistant{H}｜>", f"<｜hy_eos{H}｜>"),
    "inclusionai-ling-3.0-flash.jinja": ("<role>ASSISTANT</role>", "<|role_end|>"),
    "StepFun3.5-Flash.jinja": ("<|im_start|>assistant\n", "<|im_end|>"),
    "GigaChat3.1-10B-A1.8B.jinja": ("assistant<|role_sep|>\n", "<|message_sep|>"),
    "poolside-Laguna-S-2.1.jinja": ("<assistant>", "</assistant>"),
    "ByteDance-Seed-OSS.jinja": ("<seed:bos>assistant\n", "<seed:eos>"),
    "NVIDIA-Nemotron-Nano-v2.jinja": ("<SPECIAL_11>Assistant\n", "\n<SPECIAL_12>"),
}


@NO_SDIST
@pytest.mark.parametrize("name", sorted(TURNS))
def test_the_templates_own_rendering_of_two_calls_parses_back(name):
    """The template writes earlier calls (nested arguments included) in the syntax the parser reads."""
    calls = [("get_weather", {"city": "Paris", "days": 2}), ("edit_file", NESTED)]
    history = [HISTORY[0], {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call0000{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, (n, a) in enumerate(calls)]}] + [
        {"role": "tool", "tool_call_id": f"call0000{i}", "name": n, "content": "done"} for i, (n, _) in enumerate(calls)]
    opener, end = TURNS[name]
    rendered = plan_chat(TEMPLATES[name], chat_prompt(history, ALL_TOOLS[:3])).text
    turn = rendered.split("Weather in Paris?", 1)[1]
    turn = turn[turn.index(opener) + len(opener):]
    turn = turn[:turn.index(end)]
    plan = plan_for(name, tools=ALL_TOOLS[:3])
    prompt_tail = plan.text[plan.text.rindex(opener) + len(opener):]     # what the prompt already wrote
    turn = turn[len(prompt_tail):] if turn.startswith(prompt_tail) else turn
    p = plan.parser()
    if plan.opened and plan.family.think[1] not in turn:
        p.feed(plan.family.think[1])              # the earlier turn did not think: close the reasoning
    for ch in turn:
        p.feed(ch)
    p.finish()
    one = name.startswith("GigaChat")               # its template renders an assistant's first call only
    assert [(c.name, json.loads(c.arguments)) for c in p.message().tool_calls] == (calls[:1] if one else calls)


@NO_SDIST
@pytest.mark.parametrize("name", sorted(TURNS))
def test_forced_choice_grammars_are_taken_by_llama_cpp(name, demo_lm):
    from moeviz.llama.sampler import check_grammar
    fam = detect(TEMPLATES[name])
    for choice in ("required", {"type": "function", "function": {"name": "edit_file"}}):
        plan = plan_for(name, tools=ALL_TOOLS[:3], tool_choice=choice)
        check_grammar(demo_lm, plan.grammar)
        head = fam.write("edit_file", {}) if not hasattr(fam, "xml_parts") else fam.xml_parts("edit_file", "", True)[0]
        assert json.dumps(head.split("edit_file")[0])[1:-1] in plan.grammar      # the family's own call syntax


@NO_SDIST
@pytest.mark.parametrize("name, text", [
    ("inclusionai-ling-3.0-flash.jinja", "Hm.\n</think>\nText " + glm_call("get_time", ("zone", "CET"))),
    ("StepFun3.5-Flash.jinja", "Hm.\n" + coder_call("get_time", ("zone", "CET"))),
    ("tencent-Hy3.jinja", "Text " + hy3_calls(("get_time", ("zone", "CET")))),
])
@pytest.mark.parametrize("choice", [None, "none"])
def test_without_tools_a_call_is_text(name, text, choice):
    """No tools, or tools with tool_choice none: llama.cpp's parser reads content (and
    reasoning) only; the call the model wrote anyway stays in the content."""
    request = chat_prompt([USER]) if choice is None else chat_prompt([USER], TOOLS, tool_choice=choice)
    plan = plan_chat(TEMPLATES[name], request)
    streamed, msg = _parse(plan, text, 2)
    assert msg.tool_calls == [] and "<tool_call" in msg.content and streamed["content"] == msg.content


@NO_SDIST
def test_gigachat3_a_call_ends_with_its_json_object():
    """GigaChat 3's call has no closing tag: it ends with its JSON object, so a string holding the
    call marker (its newlines escaped, as JSON writes them) stays in the argument, and text after the
    call is dropped, as llama.cpp's gigachat-v3 parser reads them. (llama.cpp's JSON also takes raw
    newlines in a string; moeviz streams the arguments' text as written, so it keeps to strict JSON:
    a raw control character in a string would reach the client's JSON parser.)"""
    marker = "<|message_sep|>\n\nfunction call<|role_sep|>\n"
    city = json.dumps(f"a {marker} b")[1:-1]                # as the JSON text holds it: a\n... escaped
    assert marker not in city and "function call<|role_sep|>" in city
    text = ("Let me look that up." + marker + '{"name": "get_weather", "arguments": {"city": "'
            + city + '", "days": 2}}' + "\nThe weather is coming.")
    plan = plan_for("GigaChat3-10B-A1.8B.jinja")
    for step in (len(text), 1, 5):
        streamed, msg = _parse(plan, text, step)
        assert msg.content == "Let me look that up." == streamed["content"]
        assert [(c.name, c.arguments) for c in msg.tool_calls] == [("get_weather", f'{{"city": "{city}", "days": 2}}')]
        assert streamed["calls"] == [[c.name, c.arguments] for c in msg.tool_calls]


def _call(i, name, args):
    return {"id": f"call0000{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


# whitespace around each text: llama.cpp trims every message before rendering StepFun's template (the tool
# call's argument " Paris " is no message text: kept)
SPACED = [
    {"role": "system", "content": "  You are a careful assistant.\n\n"},
    {"role": "user", "content": "\n Weather in Paris, and the time?  \n"},
    {"role": "assistant", "content": "\nLet me look both up.  \n", "reasoning_content": "  The user wants two things.\n",
     "tool_calls": [_call(1, "get_weather", {"city": " Paris ", "days": 2}), _call(2, "get_time", {"zone": "CET"})]},
    {"role": "tool", "tool_call_id": "call00001", "content": "  18 C and sunny\n"},
    {"role": "tool", "tool_call_id": "call00002", "content": "\t14:05 \n"},
]
STEPFUN_CALLS = ("<|im_start|>user\nWeather in Paris, and the time?<|im_end|>\n<|im_start|>assistant\n{think}Let me look both up."
                 "<tool_call>\n<function=get_weather>\n<parameter=city>\n Paris \n</parameter>\n<parameter=days>\n2\n"
                 "</parameter>\n</function>\n</tool_call><tool_call>\n<function=get_time>\n<parameter=zone>\nCET\n</parameter>\n"
                 "</function>\n</tool_call><|im_end|>\n<|im_start|>tool_response\n<tool_response>18 C and sunny</tool_response>"
                 "<tool_response>14:05</tool_response><|im_end|>\n<|im_start|>assistant\n")


@NO_SDIST
@pytest.mark.parametrize("messages, tail", [
    (SPACED, STEPFUN_CALLS.format(think="<think>\nThe user wants two things.\n</think>\n") + "<think>\n"),
    (SPACED + [{"role": "assistant", "content": " It is 18 C and sunny; 14:05.\n", "reasoning_content": "\nBoth answered. "},
               {"role": "user", "content": "Thanks!\n\n  "}],
     STEPFUN_CALLS.format(think="") + "It is 18 C and sunny; 14:05.<|im_end|>\n<|im_start|>user\nThanks!<|im_end|>\n"
     "<|im_start|>assistant\n<think>\n"),
], ids=["ending in tool results", "a later turn"])
def test_stepfun_prompt_trims_each_message_as_llama_cpp_does(messages, tail):
    """The whole prompt is llama.cpp's (common_chat_templates_apply on the same messages and tools): the
    system text, then the template's tool listing, then the conversation, each text trimmed."""
    text = plan_chat(TEMPLATES["StepFun3.5-Flash.jinja"], chat_prompt(messages, TOOLS)).text
    assert text.startswith("<|im_start|>system\nYou are a careful assistant.\n\n# Tools\n\n")
    assert text.endswith("</IMPORTANT><|im_end|>\n" + tail)
    assert text.count("<|im_start|>") == 1 + tail.count("<|im_start|>")      # the system turn, then the tail


HY3_HISTORY = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "Weather in Paris, and fix a.py?"},
    {"role": "assistant", "content": "Let me look.", "reasoning_content": "Two things.",
     "tool_calls": [_call(1, "get_weather", {"city": "Paris", "days": 2}), _call(2, "edit_file", NESTED)]},
    {"role": "tool", "tool_call_id": "call00001", "content": "18 C and sunny"},
    {"role": "tool", "tool_call_id": "call00002", "content": "edited"},
    {"role": "assistant", "content": "Done: 18 C and sunny."},
    {"role": "user", "content": "Now the time in CET?"},
    {"role": "assistant", "content": "", "tool_calls": [_call(3, "get_time", {"zone": "CET"})]},
    {"role": "tool", "tool_call_id": "call00003", "content": "14:05"},
]


def _hy3_results(*results):
    return f"<tool_responses{H}>\n" + "".join(f"<tool_response{H}>\n{r}\n</tool_response{H}>\n" for r in results) \
        + f"</tool_responses{H}>"


@NO_SDIST
def test_hy3_renders_past_calls_and_results_itself_as_llama_cpp_does():
    """Hy3's template writes earlier calls itself (render.caps finds its `<arg_key:opensource>` arguments): a
    conversation with reasoning, calls (nested arguments) and their results renders as llama.cpp renders it."""
    from moeviz.engine.toolcalls.render import caps
    src = TEMPLATES["tencent-Hy3.jinja"]
    assert caps(src).tool_calls and caps(src).object_args and caps(src).tool_responses
    text = plan_chat(src, chat_prompt(HY3_HISTORY, ALL_TOOLS[:3])).text
    assert text.startswith(f"<｜hy_begin_of_sentence{H}｜>You are a careful assistant.\n\n# Tools\n\n")
    a, eos, think = f"<｜hy_Assistant{H}｜>", f"<｜hy_eos{H}｜>", f"<think{H}></think{H}>"
    assert text[text.index(f"<｜hy_User{H}｜>"):] == (
        f"<｜hy_User{H}｜>Weather in Paris, and fix a.py?{a}<think{H}>Two things.</think{H}>Let me look."
        + hy3_calls(("get_weather", ("city", "Paris"), ("days", "2")),
                    ("edit_file", ("path", "src/a<b>.py"), ("edits", EDITS_JSON), ("options", OPTIONS_JSON)))
        + eos + _hy3_results("18 C and sunny", "edited") + f"{a}{think}Done: 18 C and sunny.{eos}"
        + f"<｜hy_User{H}｜>Now the time in CET?{a}{think}" + hy3_calls(("get_time", ("zone", "CET"))) + eos
        + _hy3_results("14:05") + a + think)


@NO_SDIST
def test_lfm2_5_renders_past_calls_itself_as_llama_cpp_does():
    """LFM2.5's template writes earlier calls as Python calls (`name(key='value')`), which render.caps finds
    too: the same conversation renders as llama.cpp renders it (one list of calls, Python's quotes)."""
    text = plan_chat(TEMPLATES["LFM2.5-8B-A1B.jinja"], chat_prompt(HY3_HISTORY, ALL_TOOLS[:3])).text
    assert text.startswith("<|im_start|>system\nYou are a careful assistant.\nList of tools: [")
    assert text[text.index("<|im_start|>user"):] == (
        "<|im_start|>user\nWeather in Paris, and fix a.py?<|im_end|>\n<|im_start|>assistant\nLet me look.<|tool_call_start|>"
        "[get_weather(city='Paris', days=2), edit_file(path='src/a<b>.py', edits=[{'old': 'x = \"</tool_call>\"', "
        "'new': \"y = '<|sep|>'\", 'line': 3}], options={\"dry_run\": true, \"tags\": [\"a\", \"b\"]})]<|tool_call_end|>"
        "<|im_end|>\n<|im_start|>tool\n18 C and sunny<|im_end|>\n<|im_start|>tool\nedited<|im_end|>\n<|im_start|>assistant\n"
        "Done: 18 C and sunny.<|im_end|>\n<|im_start|>user\nNow the time in CET?<|im_end|>\n<|im_start|>assistant\n"
        "<|tool_call_start|>[get_time(zone='CET')]<|tool_call_end|><|im_end|>\n<|im_start|>tool\n14:05<|im_end|>\n"
        "<|im_start|>assistant\n")


PARTS = {"role": "user", "content": [{"type": "text", "text": "  Weather in\n"}, {"type": "text", "text": " Paris? "}]}


@NO_SDIST
@pytest.mark.parametrize("name, rendered", [
    # a template that reads a string: llama.cpp joins the parts with a newline, each as written
    ("Qwen-Qwen3-0.6B.jinja", "<|im_start|>user\n  Weather in\n\n Paris? <|im_end|>"),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "Weather in\n\n Paris?<|eot_id|>"),
    ("openbmb-MiniCPM5-1B.jinja", "<|im_start|>user\n  Weather in\n\n Paris? <|im_end|>"),
    # templates that read the parts get them: StepFun's each trimmed by llama.cpp, Gemma 4 trims them itself,
    # GLM-4.6 and MiniMax-M3 write them one after another
    ("StepFun3.5-Flash.jinja", "<|im_start|>user\nWeather inParis?<|im_end|>"),
    ("google-gemma-4-31B-it.jinja", "<|turn>user\nWeather inParis?<turn|>"),
    ("GLM-4.6.jinja", "<|user|>\n  Weather in\n Paris? <|assistant|>"),
    ("MiniMax-M3.jinja", "]~b]user\n  Weather in\n Paris? [e~["),
])
def test_text_parts_render_as_llama_cpp_renders_them(name, rendered):
    """A message's text parts (llama.cpp's prompt for the same message and tools, common/chat.cpp's
    messages_inp_normalizer and StepFun's trim_all_content)."""
    assert rendered in plan_chat(TEMPLATES[name], chat_prompt([PARTS], ALL_TOOLS[:2])).text
