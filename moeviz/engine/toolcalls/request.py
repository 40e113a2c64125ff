"""A chat request as the template sees it: OpenAI-shaped messages, tools and tool choice,
validated once (one-line errors naming the field), and the message a model's output
parses back to.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import string

from ...errors import UserError

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_TOOLS = 512
_ID_CHARS = string.ascii_letters + string.digits


class ToolRequestError(UserError, ValueError):
    """Bad messages / tools / tool_choice; `param` names the request field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclasses.dataclass
class ToolCall:
    name: str
    arguments: str              # JSON text, as OpenAI's `function.arguments`
    id: str = ""

    def openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclasses.dataclass
class ParsedMessage:
    """What an assistant turn parses back to (llama-server's message fields)."""
    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCall] = dataclasses.field(default_factory=list)

    def openai(self) -> dict:
        out = {"role": "assistant", "content": self.content if self.content or not self.tool_calls else None}
        if self.reasoning_content:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [c.openai() for c in self.tool_calls]
        return out


def new_call_id(length: int = 24) -> str:
    """A random tool-call id (llama-server: random alphanumerics; Mistral's templates want 9)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


class ChatPrompt(list):
    """The chat messages (what a trace keeps as its prompt), carrying what else the model's
    template is given: tools, tool choice and the template switches. A plain list of
    messages is a ChatPrompt without tools."""

    def __init__(self, messages=(), *, tools=None, tool_choice="auto", parallel_tool_calls=True,
                 enable_thinking=None, reasoning_effort=None, chat_template_kwargs=None, reasoning_format="auto"):
        super().__init__(messages)
        self.tools: list[dict] = tools or []
        self.tool_choice = tool_choice             # "auto" | "none" | "required" | {"name": ...}
        self.parallel_tool_calls = parallel_tool_calls
        self.enable_thinking = enable_thinking     # None: the template's default (llama.cpp passes true)
        self.reasoning_effort = reasoning_effort
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.reasoning_format = reasoning_format   # "none": <think> text stays in the content

    @property
    def forced_name(self) -> str | None:
        return self.tool_choice.get("name") if isinstance(self.tool_choice, dict) else None

    @property
    def calls_wanted(self) -> bool:
        """Whether the output is parsed for tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    def template_options(self) -> dict:
        out = dict(self.chat_template_kwargs)
        if self.enable_thinking is not None:
            out["enable_thinking"] = self.enable_thinking
        if self.reasoning_effort is not None:
            out["reasoning_effort"] = self.reasoning_effort
        return out


def _parts(content, where: str) -> list[str]:
    """The texts of a list of content parts."""
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text") \
                and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            raise ToolRequestError(f"{where}: only text content is supported", "messages")
    return parts


def join_parts(parts: list[str]) -> str:
    """Text parts as one text for a template that reads a string: llama.cpp joins them with a newline
    (common/chat.cpp, concat_content_parts: none before the first text), each as written."""
    text = ""
    for part in parts:
        text += ("\n" if text else "") + part
    return text


def _text(content, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return join_parts(_parts(content, where))
    raise ToolRequestError(f"{where}.content must be a string, a list of text parts or null", "messages")


def _arguments(args, where: str) -> dict | str:
    """Arguments as templates read them: an object (most templates iterate or tojson it)."""
    if isinstance(args, dict):
        return args
    if isinstance(args, str):
        try:
            value = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            raise ToolRequestError(f"{where}.function.arguments is not valid JSON", "messages") from None
        return value if isinstance(value, dict) else args
    raise ToolRequestError(f"{where}.function.arguments must be a JSON string", "messages")


def _tool_calls(calls, where: str) -> list[dict]:
    if not isinstance(calls, list):
        raise ToolRequestError(f"{where}.tool_calls must be a list", "messages")
    out = []
    for j, c in enumerate(calls):
        w = f"{where}.tool_calls[{j}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ToolRequestError(f"{w} must be {{type: function, function: {{name, arguments}}}}", "messages")
        call = {"type": "function", "function": {"name": fn["name"], "arguments": _arguments(fn.get("arguments", "{}"), w)}}
        if isinstance(c.get("id"), str):
            call["id"] = c["id"]
        out.append(call)
    return out


def validate_messages(messages) -> list[dict]:
    """OpenAI chat messages -> the dicts templates read (content a string; tool calls'
    arguments objects; tool_call_id / name / reasoning_content kept)."""
    if not isinstance(messages, list) or not messages:
        raise ToolRequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ToolRequestError(f"{where} must be an object with a role of {', '.join(ROLES)}", "messages")
        msg = {"role": m["role"], "content": _text(m.get("content"), where)}
        if isinstance(m.get("content"), list):     # a template that reads typed content gets the parts
            msg["content_parts"] = _parts(m["content"], where)
        if m.get("tool_calls"):
            if m["role"] != "assistant":
                raise ToolRequestError(f"{where}: only assistant messages carry tool_calls", "messages")
            msg["tool_calls"] = _tool_calls(m["tool_calls"], where)
        elif msg["content"] is None and m["role"] != "assistant":
            raise ToolRequestError(f"{where}.content is missing", "messages")
        if msg["content"] is None:      # templates test `'x' in content`: llama.cpp gives them ""
            msg["content"] = ""
        for key in ("tool_call_id", "name", "reasoning_content"):
            v = m.get(key)
            if v is not None:
                if not isinstance(v, str):
                    raise ToolRequestError(f"{where}.{key} must be a string", "messages")
                msg[key] = v
        out.append(msg)
    return out


def validate_tools(tools) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise ToolRequestError(f"'tools' must be a list of up to {MAX_TOOLS} function tools", "tools")
    out, names = [], set()
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise ToolRequestError(f"tools[{i}] must be {{type: function, function: {{name, parameters}}}}", "tools")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 128 or any(c.isspace() for c in name):
            raise ToolRequestError(f"tools[{i}].function.name must be a name without spaces", "tools")
        if name in names:
            raise ToolRequestError(f"tools[{i}]: the name {name!r} is given twice", "tools")
        names.add(name)
        params = fn.get("parameters")
        if params is None or params == {}:
            params = {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ToolRequestError(f"tools[{i}].function.parameters must be a JSON schema object", "tools")
        # llama.cpp gives every tool a description ("" when none): templates read it unguarded
        clean = {"name": name, "description": fn["description"] if isinstance(fn.get("description"), str) else "",
                 "parameters": params}
        if isinstance(fn.get("strict"), bool):
            clean["strict"] = fn["strict"]
        out.append({"type": "function", "function": clean})
    return out


def validate_tool_choice(choice, tools: list[dict]):
    if choice is None:
        return "auto"
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise ToolRequestError("tool_choice 'required' needs 'tools'", "tool_choice")
        return choice
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else (choice.get("name") if isinstance(choice, dict) else None)
    if not isinstance(name, str):
        raise ToolRequestError("'tool_choice' must be auto, none, required or {type: function, function: {name}}",
                               "tool_choice")
    if name not in {t["function"]["name"] for t in tools}:
        raise ToolRequestError(f"tool_choice names {name[:80]!r}, which is not among 'tools'", "tool_choice")
    return {"name": name}


def chat_prompt(messages, tools=None, tool_choice=None, parallel_tool_calls=None, *, enable_thinking=None,
                reasoning_effort=None, chat_template_kwargs=None, reasoning_format=None) -> ChatPrompt:
    """Validate an OpenAI-shaped chat request's prompt parts (one-line ToolRequestError)."""
    msgs = validate_messages(messages)
    tools = validate_tools(tools)
    choice = validate_tool_choice(tool_choice, tools)
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise ToolRequestError("'parallel_tool_calls' must be true or false", "parallel_tool_calls")
    if enable_thinking is not None and not isinstance(enable_thinking, bool):
        raise ToolRequestError("'enable_thinking' must be true or false", "chat_template_kwargs")
    if reasoning_effort is not None and not isinstance(reasoning_effort, str):
        raise ToolRequestError("'reasoning_effort' must be a string", "reasoning_effort")
    if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, dict):
        raise ToolRequestError("'chat_template_kwargs' must be an object", "chat_template_kwargs")
    kwargs = dict(chat_template_kwargs or {})
    if enable_thinking is None and "enable_thinking" in kwargs:
        if not isinstance(kwargs["enable_thinking"], bool):
            raise ToolRequestError("chat_template_kwargs.enable_thinking must be true or false", "chat_template_kwargs")
        enable_thinking = kwargs.pop("enable_thinking")
    if reasoning_effort == "none":               # llama-server: "none" turns reasoning off
        enable_thinking, reasoning_effort = False, None
    if reasoning_format not in (None, "auto", "none", "deepseek", "deepseek-legacy"):
        raise ToolRequestError("'reasoning_format' must be none, auto, deepseek or deepseek-legacy", "reasoning_format")
    return ChatPrompt(msgs, tools=tools, tool_choice=choice,
                      parallel_tool_calls=True if parallel_tool_calls is None else parallel_tool_calls,
                      enable_thinking=enable_thinking, reasoning_effort=reasoning_effort, chat_template_kwargs=kwargs,
                      reasoning_format="none" if reasoning_format == "none" else "auto")
