"""Anthropic's Messages and OpenAI's Responses requests as chat-completion bodies, as
llama-server converts them (tools/server/server-chat.cpp: server_chat_convert_anthropic_to_oai,
server_chat_convert_responses_to_chatcmpl), so that one parser (openai_shapes.parse_request),
one template path (openai_tools) and one run path (api_runs) serve all three formats.

Pure functions; a request they cannot carry is one ApiRequestError naming its field.
moeviz's own fields (return_routed_experts, routed_experts_start_len, seed, top_k, min_p, ...)
pass through unchanged.
"""
from __future__ import annotations

import json

from .openai_shapes import ApiRequestError

# fields both formats may send that mean the same in a chat-completion body
PASSED = ("temperature", "top_p", "top_k", "min_p", "seed", "stream", "return_routed_experts",
          "routed_experts_start_len", "chat_template_kwargs", "parallel_tool_calls", "typical_p",
          "presence_penalty", "frequency_penalty", "repeat_penalty", "repeat_last_n", "grammar", "model")
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096     # llama-server's, when a client leaves out Anthropic's required max_tokens


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ApiRequestError("the request body must be a JSON object")
    return body


def _text_of(blocks, where: str) -> str:
    """The text of a string or a list of text blocks."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise ApiRequestError(f"'{where}' must be a string or a list of text blocks", where)
    out = []
    for b in blocks:
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise ApiRequestError(f"'{where}' may hold only text blocks here", where)
        out.append(b["text"])
    return "".join(out)


def _passed(body: dict) -> dict:
    return {k: body[k] for k in PASSED if k in body}


# Anthropic Messages ---------------------------------------------------------------------
def anthropic_to_chat(body) -> dict:
    body = _object(body)
    messages = []
    if body.get("system") is not None:
        messages.append({"role": "system", "content": _text_of(body["system"], "system")})
    given = body.get("messages")
    if not isinstance(given, list) or not given:
        raise ApiRequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, m in enumerate(given):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise ApiRequestError(f"messages[{i}] must be an object with role 'user' or 'assistant'", "messages")
        messages.extend(_anthropic_message(m, i))
    chat = {**_passed(body), "messages": messages,
            "max_tokens": body.get("max_tokens", ANTHROPIC_DEFAULT_MAX_TOKENS)}
    if body.get("stop_sequences") is not None:
        chat["stop"] = body["stop_sequences"]
    if body.get("tools") is not None:
        chat["tools"] = [_anthropic_tool(t, i) for i, t in enumerate(_list(body["tools"], "tools"))]
    choice = body.get("tool_choice")
    if choice is not None:
        chat["tool_choice"], parallel = _anthropic_tool_choice(choice)
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    enable = _anthropic_thinking(body.get("thinking"), chat["max_tokens"])
    if enable is not None:
        kwargs = chat.get("chat_template_kwargs", {})
        kwargs = dict(kwargs) if isinstance(kwargs, dict) else kwargs   # not an object: parse_request says so
        if isinstance(kwargs, dict):
            kwargs.setdefault("enable_thinking", enable)      # the client's own chat_template_kwargs win
        chat["chat_template_kwargs"] = kwargs
    return chat


ANTHROPIC_THINKING = ("enabled", "disabled", "adaptive")
ANTHROPIC_MIN_BUDGET = 1024     # Anthropic's least budget_tokens


def _anthropic_thinking(thinking, max_tokens) -> bool | None:
    """Anthropic's `thinking` as the template's enable_thinking (None: left out, the
    template's default). `enabled` needs a budget_tokens Anthropic would take (an integer,
    at least 1024, under max_tokens): validated, not enforced (the model thinks until it
    closes its reasoning; max_tokens bounds the whole answer). `adaptive`: the model's own
    choice, which for a local model is its template's thinking switch on."""
    if thinking is None:
        return None
    kinds = "{type: enabled, budget_tokens}, {type: disabled} or {type: adaptive}"
    if not isinstance(thinking, dict) or thinking.get("type") not in ANTHROPIC_THINKING:
        raise ApiRequestError(f"'thinking' must be {kinds}", "thinking")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < ANTHROPIC_MIN_BUDGET:
            raise ApiRequestError(f"thinking.budget_tokens must be an integer of at least {ANTHROPIC_MIN_BUDGET}",
                                  "thinking")
        if isinstance(max_tokens, int) and budget >= max_tokens:
            raise ApiRequestError("thinking.budget_tokens must be less than max_tokens", "thinking")
    if thinking.get("display") not in (None, "summarized", "omitted"):
        raise ApiRequestError("thinking.display must be summarized or omitted", "thinking")
    return thinking["type"] != "disabled"


def anthropic_thinking_display(body) -> str:
    """How the answer shows the model's reasoning: "summarized" (a thinking block, as
    Anthropic's default), "omitted" (`display: omitted`: the block with its signature only)
    or "none" (thinking disabled: no thinking block, as Anthropic answers, even where the
    model reasoned anyway; the stored run keeps what it wrote)."""
    thinking = body.get("thinking") if isinstance(body, dict) else None
    if not isinstance(thinking, dict):
        return "summarized"
    if thinking.get("type") == "disabled":
        return "none"
    return "omitted" if thinking.get("display") == "omitted" else "summarized"


def _list(v, where: str) -> list:
    if not isinstance(v, list):
        raise ApiRequestError(f"'{where}' must be a list", where)
    return v


def _anthropic_message(m: dict, i: int) -> list[dict]:
    """One Anthropic message as chat messages: text blocks, thinking as the assistant's
    reasoning_content (the template renders it where it keeps reasoning in history),
    tool_use as its tool_calls, each tool_result as a `tool` message."""
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": m["role"], "content": content}]
    if not isinstance(content, list):
        raise ApiRequestError(f"messages[{i}].content must be a string or a list of content blocks", "messages")
    text, reasoning, calls, results = [], [], [], []
    assistant = m["role"] == "assistant"
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text" and isinstance(b.get("text"), str):
            text.append(b["text"])
        elif kind in ("thinking", "redacted_thinking") and not assistant:
            raise ApiRequestError(f"messages[{i}].content[{j}]: a {kind} block belongs to an assistant message",
                                  "messages")
        elif kind == "thinking":
            if not isinstance(b.get("thinking"), str):
                raise ApiRequestError(f"messages[{i}].content[{j}]: a thinking block needs a string 'thinking'",
                                      "messages")
            reasoning.append(b["thinking"])     # its signature is not checked: any client's thinking is taken
        elif kind == "redacted_thinking":
            continue        # encrypted reasoning only Anthropic can read: accepted, nothing to render
        elif kind == "tool_use" and isinstance(b.get("name"), str):
            calls.append({"id": str(b.get("id", f"toolu_{i}_{j}")), "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(b.get("input", {}),
                                                                                  ensure_ascii=False)}})
        elif kind == "tool_result":
            results.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")),
                            "content": _tool_result_text(b.get("content"), i)})
        else:
            raise ApiRequestError(f"messages[{i}].content[{j}]: only text, thinking, tool_use and tool_result blocks "
                                  "are supported", "messages")
    if not (text or calls or reasoning or assistant):
        return results
    msg = {"role": m["role"], "content": "".join(text)}     # an assistant's turn kept even when all redacted
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "\n\n".join(reasoning)
    # a user's tool_results answer the assistant's calls before it: they come first, then its text
    return [msg] if assistant else results + [msg]


def _tool_result_text(content, i: int) -> str:
    if content is None:
        return ""
    return _text_of(content, f"messages[{i}].content.tool_result")


def _anthropic_tool(t, i: int) -> dict:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise ApiRequestError(f"tools[{i}] must be an object with a string 'name'", "tools")
    return {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                             "parameters": t.get("input_schema") or {"type": "object"}}}


def _anthropic_tool_choice(choice) -> tuple:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise ApiRequestError("'tool_choice' must be {type: auto | any | tool | none}", "tool_choice")
    parallel = None if choice.get("disable_parallel_tool_use") is None else not choice["disable_parallel_tool_use"]
    kind = choice["type"]
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise ApiRequestError("'tool_choice' of type tool needs a string 'name'", "tool_choice")
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[kind], parallel


# OpenAI Responses -----------------------------------------------------------------------
def responses_state(body) -> tuple[str | None, bool]:
    """The request's `previous_response_id` (None when absent or empty) and `store` (true
    when absent, as OpenAI's default). `conversation` (OpenAI's Conversations API) is refused."""
    body = _object(body)
    if body.get("conversation") is not None:
        raise ApiRequestError("'conversation' is not supported: use 'previous_response_id' or send the whole "
                              "conversation as 'input'", "conversation")
    previous = body.get("previous_response_id")
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise ApiRequestError("'store' must be true or false", "store")
    return (previous if previous != "" else None), store is not False


def responses_input(body) -> list[dict]:
    """The request's `input` as Responses items, as OpenAI lists them (input_items): a
    string is one user message, and a message's string content one text part."""
    given = _object(body).get("input")
    if given is None:
        raise ApiRequestError("'input' is required", "input")
    if isinstance(given, str):
        given = [{"type": "message", "role": "user", "content": given}]
    if not isinstance(given, list):
        raise ApiRequestError("'input' must be a string or a list of input items", "input")
    items = []
    for item in given:
        if isinstance(item, dict) and item.get("type", "message") == "message":
            item = {**item, "type": "message"}
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
        items.append(item)
    return items


def responses_to_chat(body, previous: tuple | list = ()) -> dict:
    """A Responses request as a chat body; `previous`: the stored conversation's items
    (previous_response_id's, response_store.ResponseStore.conversation), before the input."""
    body = _object(body)
    messages = []
    if body.get("instructions") is not None:
        if not isinstance(body["instructions"], str):
            raise ApiRequestError("'instructions' must be a string", "instructions")
        messages.append({"role": "system", "content": body["instructions"]})
    for item in previous:
        _responses_item(item, 0, messages)
    held = {item["id"] for item in previous if isinstance(item, dict) and item.get("id")}
    for i, item in enumerate(responses_input(body)):
        if isinstance(item, dict) and item.get("id") in held:   # sent back with previous_response_id: OpenAI refuses it too
            raise ApiRequestError(f"Duplicate item found with id {str(item['id'])[:80]}: previous_response_id already "
                                  "holds it; send only the new items", f"input[{i}]")
        _responses_item(item, i, messages)
    chat = {**_passed(body), "messages": messages}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools") is not None:
        chat["tools"] = [_responses_tool(t, i) for i, t in enumerate(_list(body["tools"], "tools"))]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise ApiRequestError("'tool_choice' must be auto, none, required or {type: function, name}", "tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.get("name", "response"), "schema": fmt.get("schema"), "strict": fmt.get("strict", False)}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    return chat


def _responses_item(item, i: int, messages: list) -> None:
    if not isinstance(item, dict):
        raise ApiRequestError(f"input[{i}] must be an object", "input")
    kind = item.get("type", "message")
    merge = bool(messages) and messages[-1]["role"] == "assistant"
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise ApiRequestError(f"input[{i}].role must be user, system, developer or assistant", "input")
        text = _responses_content(item.get("content"), i)
        if role == "assistant" and merge and not messages[-1].get("tool_calls"):
            messages[-1]["content"] += text
        else:
            messages.append({"role": role, "content": text})
    elif kind == "function_call":
        if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments"), str):
            raise ApiRequestError(f"input[{i}]: a function_call needs string 'name' and 'arguments'", "input")
        call = {"id": str(item.get("call_id", "")), "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}}
        if merge:
            messages[-1].setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                         "content": output if isinstance(output, str) else _responses_content(output, i)})
    elif kind == "reasoning":
        text = "".join(str(c.get("text", "")) for c in item.get("content") or [] if isinstance(c, dict))
        if merge:
            messages[-1]["reasoning_content"] = text
        else:
            messages.append({"role": "assistant", "content": "", "reasoning_content": text})
    else:
        raise ApiRequestError(f"input[{i}]: type {str(kind)[:40]!r} is not supported (message, function_call, "
                              "function_call_output, reasoning)", "input")


def _responses_content(content, i: int) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiRequestError(f"input[{i}].content must be a string or a list of text parts", "input")
    out = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text") \
                and isinstance(part.get("text"), str):
            out.append(part["text"])
        else:
            raise ApiRequestError(f"input[{i}].content: only input_text / output_text parts are supported", "input")
    return "".join(out)


def _responses_tool(t, i: int) -> dict:
    if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("name"), str):
        raise ApiRequestError(f"tools[{i}]: only function tools ({{type: function, name, parameters}}) are supported",
                              "tools")
    return {"type": "function", "function": {"name": t["name"], "description": t.get("description") or "",
                                             "parameters": t.get("parameters") or {"type": "object"}}}
