"""Tool calling through real chat templates (llama.cpp's models/templates/, read from the
llama-cpp-python sdist as test_chat_templates does): tools reach the prompt through the
template, earlier calls and tool results are rendered (never dropped), each family's
output parses back (streamed a character at a time it adds up to the same message), and
a forced tool choice's grammar is one llama.cpp's grammar sampler takes."""
import json

import pytest
from test_chat_templates import NO_SDIST, TEMPLATES

from moeviz.engine.text import PromptError
from moeviz.engine.toolcalls import (Content, Reasoning, ToolCallArgs, ToolCallStart, ToolRequestError, chat_prompt,
                                     detect, plan_chat)
from moeviz.gguf_write import CHATML_TEMPLATE

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]
USER = {"role": "user", "content": "Weather in Paris?"}
HISTORY = [USER,
           {"role": "assistant", "content": None, "tool_calls": [{"id": "call12345", "type": "function", "function": {
               "name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}]},
           {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "18 C and sunny"}]
CALLS = [("get_weather", {"city": "Paris", "days": 2}), ("get_time", {"zone": "CET"})]

# template -> the family llama.cpp's detection gives it
FAMILIES = {
    "Qwen-Qwen3-0.6B.jinja": "hermes", "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": "hermes", "Qwen-QwQ-32B.jinja": "hermes",
    "Qwen3-Coder.jinja": "qwen3-coder", "Qwen3.5-4B.jinja": "qwen3-coder",
    "GLM-4.6.jinja": "glm-4.5", "GLM-4.7-Flash.jinja": "glm-4.5",
    "moonshotai-Kimi-K2.jinja": "kimi-k2", "Kimi-K2-Thinking.jinja": "kimi-k2",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "deepseek", "deepseek-ai-DeepSeek-V3.1.jinja": "deepseek",
    "llama-cpp-deepseek-r1.jinja": "deepseek",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral",
    "unsloth-mistral-Devstral-Small-2507.jinja": "mistral",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3", "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama3",
    "openai-gpt-oss-120b.jinja": "gpt-oss", "MiniMax-M2.jinja": "minimax-m2",
    "deepseek-ai-DeepSeek-V3.2.jinja": "deepseek-dsml", "deepseek-ai-DeepSeek-V4.jinja": "deepseek-dsml",
    "google-gemma-4-31B-it.jinja": "gemma4",
    "upstage-Solar-Open-100B.jinja": "solar-open",
    "LFM2-8B-A1B.jinja": "lfm2", "LFM2.5-8B-A1B.jinja": "lfm2",
    "MiniMax-M1.jinja": "minimax-m1", "Apriel-1.6-15b-Thinker-fixed.jinja": "minimax-m1",
    "GigaChat3-10B-A1.8B.jinja": "gigachat3", "GigaChat3.1-10B-A1.8B.jinja": "gigachat3",
    "Cohere2MoE.jinja": "cohere", "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": "cohere",
    "microsoft-Phi-3.5-mini-instruct.jinja": "generic", "google-gemma-2-2b-it.jinja": "generic",
}
SINGLE_CALL = {"llama3", "gpt-oss"}        # one call per turn in these formats


def collect(events) -> dict:
    out = {"content": "", "reasoning": "", "calls": []}
    for ev in events:
        if isinstance(ev, Content):
            out["content"] += ev.text
        elif isinstance(ev, Reasoning):
            out["reasoning"] += ev.text
        elif isinstance(ev, ToolCallStart):
            assert ev.index == len(out["calls"])
            out["calls"].append([ev.name, ""])
        elif isinstance(ev, ToolCallArgs):
            out["calls"][ev.index][1] += ev.text
    return out


def model_output(plan, calls, content="Let me look that up.") -> str:
    """What a model of the plan's family writes: reasoning when the template thinks, a
    sentence, then the calls in the family's syntax."""
    fam = plan.family
    written = fam.join([fam.write(name, args, i) for i, (name, args) in enumerate(calls)])
    if fam.name == "gpt-oss":
        return "<|channel|>analysis<|message|>The user wants weather.<|end|><|start|>assistant" + written
    if fam.name == "cohere":
        return (("" if plan.opened else "<|START_THINKING|>") + "The user wants weather.<|END_THINKING|><|START_TEXT|>" + content
                + "<|END_TEXT|>" + written)
    if fam.name == "solar-open":
        return ("<|think|>The user wants weather.<|end|><|begin|>assistant<|content|>" + content
                + "<|end|><|begin|>assistant" + written)
    think, (start, end) = "", fam.think
    if plan.thinking:
        think = ("" if plan.opened else start + "\n") + "The user wants weather.\n" + end + "\n\n"
    lead = "" if fam.name in ("llama3", "generic") else content + "\n"
    return think + lead + written


@NO_SDIST
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_renders_tools_and_history_and_parses_its_calls_back(name):
    src = TEMPLATES[name]
    family = FAMILIES[name]
    assert detect(src).name == family
    plan = plan_chat(src, chat_prompt([USER], TOOLS))
    # the tools reach the prompt: the template's own listing, or the polyfilled system message
    assert "get_weather" in plan.text and "The weather in a city now" in plan.text and "get_time" in plan.text
    # an earlier call and its result are rendered, not dropped
    history = plan_chat(src, chat_prompt(HISTORY, TOOLS)).text
    assert "18 C and sunny" in history
    assert "get_weather" in history.split("Weather in Paris?", 1)[1] and "Paris" in history.split("Weather in Paris?", 1)[1]

    calls = CALLS[:1] if family in SINGLE_CALL else CALLS
    text = model_output(plan, calls)
    if name == "GigaChat3-10B-A1.8B.jinja":
        # llama.cpp's gigachat-v3 parser reads one call (max_calls = 1): of the two written, the first
        # (llama.cpp's answer for this output: get_weather's call only, the get_time message dropped)
        calls = CALLS[:1]
    streamed = plan.parser()
    events = [ev for ch in text for ev in streamed.feed(ch)] + streamed.finish()
    whole = plan.parser()
    whole.feed(text)
    whole.finish()
    got, msg = collect(events), whole.message()
    assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == calls
    assert got["calls"] == [[c.name, c.arguments] for c in msg.tool_calls]      # the stream adds up to the message
    assert got["content"] == msg.content and got["reasoning"] == msg.reasoning_content
    if family not in ("llama3", "generic", "gpt-oss"):
        assert msg.content == "Let me look that up."
    if plan.thinking:
        assert msg.reasoning_content == "The user wants weather."
        assert plan.family.think[0] not in msg.content and plan.family.think[1] not in msg.content
    assert len({c.id for c in msg.tool_calls}) == len(calls) and all(c.id for c in msg.tool_calls)


@NO_SDIST
@pytest.mark.parametrize("name, fragment", [
    ("Qwen-Qwen3-0.6B.jinja", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>'),
    ("Qwen3-Coder.jinja", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"),
    ("GLM-4.6.jinja", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>"),
    ("moonshotai-Kimi-K2.jinja", "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
                                 '{"city": "Paris", "days": 2}<|tool_call_end|>'),
    ("deepseek-ai-DeepSeek-V3.1.jinja", '<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris", "days": 2}'),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"'),
    ("openai-gpt-oss-120b.jinja", ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"'),
    ("google-gemma-4-31B-it.jinja", '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:2}<tool_call|>'),
    ("upstage-Solar-Open-100B.jinja", '<|tool_call:begin|>call12345<|tool_call:name|>get_weather<|tool_call:args|>'
                                      '{"city": "Paris", "days": 2}<|tool_call:end|>'),
    ("Cohere2MoE.jinja", '<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", "parameters": '
                         '{"city": "Paris", "days": 2}}\n]<|END_ACTION|>'),
    ("GigaChat3-10B-A1.8B.jinja", '<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "get_weather", '
                                  '"arguments": {"city": "Paris", "days": 2}}'),
    ("MiniMax-M2.jinja", '<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'),
    ("deepseek-ai-DeepSeek-V3.2.jinja", '<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter name="city" '
                                        'string="true">Paris</｜DSML｜parameter>\n<｜DSML｜parameter name="days" '
                                        'string="false">2</｜DSML｜parameter>'),
])
def test_the_templates_own_rendering_of_a_call_parses_back(name, fragment):
    """The template writes an earlier call in the syntax the parser reads."""
    src = TEMPLATES[name]
    history = plan_chat(src, chat_prompt(HISTORY, TOOLS)).text
    assert fragment in history
    plan = plan_chat(src, chat_prompt([USER], TOOLS))
    start = history.index(fragment)
    text = history[start:]
    for end in ("<|message_sep|>\n\nfunction result", "<|im_end|>", "<｜tool▁calls▁end｜>", "</s>", "<|call|>",
                "[/TOOL_CALLS]", "<|tool_calls_section_end|>"):
        text = text.split(end, 1)[0]
    if plan.family.name == "deepseek":
        text = "<｜tool▁calls▁begin｜>" + text
    if plan.family.name in ("minimax-m2", "deepseek-dsml"):
        fam = plan.family
        text = fam.section_open + "\n" + text.split(fam.section_close)[0] + fam.section_close
    if plan.family.name == "kimi-k2":
        text = "<|tool_calls_section_begin|>" + text
    if plan.family.name == "gpt-oss":
        text = "<|start|>assistant" + text
    if plan.family.name == "solar-open":
        text = "<|tool_calls|>" + text.split("<|calls|>")[0]
    p = plan.parser()
    if plan.opened and plan.family.name not in ("gpt-oss", "solar-open"):
        p.feed(plan.family.think[1])              # the prompt opened the reasoning: close it
    for ch in text:
        p.feed(ch)
    p.finish()
    msg = p.message()
    assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [("get_weather", {"city": "Paris", "days": 2})]


def test_the_chatml_demo_template_gets_the_generic_form():
    plan = plan_chat(CHATML_TEMPLATE, chat_prompt([USER], TOOLS))
    assert plan.family.name == "generic" and not plan.thinking
    assert plan.text.startswith("<|im_start|>system\nYou can call any of the following tools")
    history = plan_chat(CHATML_TEMPLATE, chat_prompt(HISTORY, TOOLS)).text
    assert '<|im_start|>assistant\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]}' \
        in history
    assert "<|im_start|>tool\n18 C and sunny<|im_end|>" in history
    p = plan.parser()
    p.feed('{"tool_calls": [{"name": "get_time", "arguments": {"zone": "UTC"}}]}')
    p.finish()
    assert [(c.name, c.arguments) for c in p.message().tool_calls] == [("get_time", '{"zone": "UTC"}')]
    plain = plan.parser()
    out = collect(plain.feed("def f(x): {") + plain.feed("return x}") + plain.finish())
    assert out["content"] == "def f(x): {return x}" and not out["calls"]


def test_text_that_only_looks_like_a_call_is_content_and_partial_markers_are_held_back():
    plan = plan_chat(CHATML_TEMPLATE.replace("message['content']", "message['content'] + '<tool_call>'"),
                     chat_prompt([USER], TOOLS))
    assert plan.family.name == "hermes"
    p = plan.parser()
    assert collect(p.feed("Use the <tool")) == {"content": "Use the", "reasoning": "", "calls": []}
    assert collect(p.feed("box> now.") + p.finish())["content"] == " <toolbox> now."
    assert p.message().content == "Use the <toolbox> now." and p.message().tool_calls == []


@NO_SDIST
def test_tool_choice_none_lists_the_tools_but_reads_no_calls():
    plan = plan_chat(TEMPLATES["Qwen-Qwen2.5-7B-Instruct.jinja"], chat_prompt([USER], TOOLS, tool_choice="none"))
    assert "get_weather" in plan.text and plan.grammar is None
    p = plan.parser()
    text = model_output(plan, CALLS[:1])
    p.feed(text)
    p.finish()
    assert p.message().tool_calls == [] and p.message().content == text


def test_no_tools_no_thinking_passes_text_through():
    plan = plan_chat(CHATML_TEMPLATE, chat_prompt([USER]))
    p = plan.parser()
    assert collect(p.feed('{"tool_calls": 1}') + p.finish())["content"] == '{"tool_calls": 1}'


@NO_SDIST
def test_thinking_only_and_reasoning_format_none():
    src = TEMPLATES["Qwen-Qwen3-0.6B.jinja"]
    plan = plan_chat(src, chat_prompt([USER]))
    p = plan.parser()
    out = collect([e for ch in "<think>\nhmm\n</think>\n\nHello." for e in p.feed(ch)] + p.finish())
    assert out == {"content": "Hello.", "reasoning": "hmm", "calls": []}
    raw = plan_chat(src, chat_prompt([USER], reasoning_format="none")).parser()
    assert collect(raw.feed("<think>\nhmm\n</think>\n\nHello.") + raw.finish())["content"] == "<think>\nhmm\n</think>\n\nHello."
    off = plan_chat(src, chat_prompt([USER], chat_template_kwargs={"enable_thinking": False}))
    assert off.text.endswith("<think>\n\n</think>\n\n")


@NO_SDIST
def test_parallel_tool_calls_false_keeps_the_first_call():
    plan = plan_chat(TEMPLATES["Qwen-Qwen2.5-7B-Instruct.jinja"], chat_prompt([USER], TOOLS, parallel_tool_calls=False))
    p = plan.parser()
    p.feed(model_output(plan, CALLS))
    p.finish()
    assert [c.name for c in p.message().tool_calls] == ["get_weather"]


@pytest.mark.parametrize("kwargs, message", [
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name must be a name"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1]: the name 'get_weather' is given twice"),
    ({"tools": "x"}, "'tools' must be a list"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "'tool_choice' must be auto, none, required or"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice names 'nope', which is not among 'tools'"),
    ({"tool_choice": "required"}, "tool_choice 'required' needs 'tools'"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{x"}}]}]},
     "messages[0].tool_calls[0].function.arguments is not valid JSON"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0] must be an object with a role of"),
    ({"messages": [{"role": "tool"}]}, "messages[0].content is missing"),
])
def test_bad_requests_are_one_line(kwargs, message):
    args = {"messages": [USER], **kwargs}
    with pytest.raises(ToolRequestError) as e:
        chat_prompt(args.pop("messages"), **{k.replace("tools", "tools"): v for k, v in args.items()})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@NO_SDIST
def test_a_template_refusing_a_message_is_one_line():
    with pytest.raises(PromptError, match="refuses these messages: Tool call IDs should be alphanumeric"):
        plan_chat(TEMPLATES["mistralai-Mistral-Nemo-Instruct-2407.jinja"], chat_prompt(
            [USER, {"role": "assistant", "tool_calls": [{"id": "x", "type": "function",
                                                          "function": {"name": "get_weather", "arguments": "{}"}}]}],
            TOOLS))


@NO_SDIST
@pytest.mark.parametrize("name", sorted(FAMILIES) + ["chatml"])
def test_forced_choice_grammars_are_taken_by_llama_cpp(name, demo_lm):
    from moeviz.llama.sampler import check_grammar
    src = CHATML_TEMPLATE if name == "chatml" else TEMPLATES[name]
    for choice in ("required", {"type": "function", "function": {"name": "get_time"}}):
        plan = plan_chat(src, chat_prompt([USER], TOOLS, tool_choice=choice))
        assert plan.grammar and "root ::=" in plan.grammar
        check_grammar(demo_lm, plan.grammar)
    assert plan_chat(src, chat_prompt([USER], TOOLS)).grammar is None          # auto: the model chooses


@pytest.fixture(scope="module")
def demo_lm():
    from moeviz.demo import SHIPPED
    from moeviz.engine import Engine
    eng = Engine(str(SHIPPED), n_ctx=256)
    yield eng.lm
    eng.close()


@NO_SDIST
@pytest.mark.slow
def test_the_scripted_fixture_writes_its_scripts(tmp_path):
    """Greedy decoding writes script 0, and script 1 once a tool result is in the prompt;
    the routers route every token (the recorded routing is real), the pieces were cut
    anywhere, tags included."""
    from moeviz.engine import Engine, Finished, SamplingSettings, TokenRouted
    from moeviz.fixtures import ScriptedSpec, write_scripted_fixture

    call = '<think>\nLooking it up.\n</think>\n\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
    answer = "<think>\nGot it.\n</think>\n\nIt is noon in CET."
    path = write_scripted_fixture(tmp_path / "s.gguf", ScriptedSpec(
        scripts=(call, answer), chat_template=TEMPLATES["Qwen-Qwen3-0.6B.jinja"]))
    eng = Engine(str(path), n_ctx=2048)
    try:
        def run(messages):
            tokens, experts = [], set()
            for ev in eng.generate(chat_prompt(messages, TOOLS), SamplingSettings(max_tokens=100, temperature=0)):
                if isinstance(ev, TokenRouted):
                    tokens.append(ev.token.text)
                    experts.update(ev.routing.expert_ids.ravel().tolist())
                elif isinstance(ev, Finished):
                    assert ev.reason == "eos"
            return tokens, experts

        tokens, experts = run([USER])
        assert "".join(tokens) == call and len(tokens) > 10 and len(experts) > 2
        # some tag is split across tokens: the streaming parser's held-back markup is exercised
        assert any(not any(tag in t for t in tokens) for tag in ("<think>", "</think>", "<tool_call>", "</tool_call>"))
        history = [USER, {"role": "assistant", "tool_calls": [{"id": "a1", "type": "function", "function": {
            "name": "get_time", "arguments": '{"zone": "CET"}'}}]}, {"role": "tool", "tool_call_id": "a1", "content": "12:00"}]
        assert "".join(run(history)[0]) == answer
    finally:
        eng.close()


def _deep(n):
    d = {"type": "object"}
    for _ in range(n):
        d = {"type": "object", "properties": {"a": d}}
    return d


@pytest.mark.parametrize("params, message", [
    ({"type": "object", "properties": {"x": {"$ref": "http://evil.example/x.json"}}},
     "a tool's parameters schema cannot be turned into a grammar: unsupported $ref http://evil.example/x.json"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(((("}}},
     "a tool's parameters schema cannot be turned into a grammar: pattern /((((/ is not a valid regular expression"),
    ({"type": "bogus"}, "a tool's parameters schema cannot be turned into a grammar: Unrecognized schema"),
    (_deep(200), "'tools' is "),
])
def test_schemas_no_grammar_can_hold_are_one_line_errors(params, message):
    from moeviz.llama.grammar import GrammarError
    tools = [{"type": "function", "function": {"name": "f", "parameters": params}}]
    with pytest.raises(GrammarError) as e:
        plan_chat(CHATML_TEMPLATE, chat_prompt([USER], tools, tool_choice="required"))
    assert str(e.value).startswith(message) and e.value.param == "tools" and "\n" not in str(e.value)
    assert plan_chat(CHATML_TEMPLATE, chat_prompt([USER], tools)).grammar is None      # auto needs no grammar


@NO_SDIST
@pytest.mark.parametrize("name", sorted(TEMPLATES) or ["(none)"])
def test_every_vendored_template_takes_tools_a_call_and_its_result(name):
    """Natively or polyfilled, no template refuses tools or a tool-calling history, and
    none drops the call or the result."""
    src = TEMPLATES[name]
    assert "get_weather" in plan_chat(src, chat_prompt([USER], TOOLS)).text
    text = plan_chat(src, chat_prompt(HISTORY, TOOLS)).text
    after = text[text.index("Weather in Paris?") + len("Weather in Paris?"):]      # the conversation after the question
    assert "18 C and sunny" in after and "get_weather" in after and "Paris" in after
