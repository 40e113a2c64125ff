"""Tool calling and reasoning for chat requests, as llama.cpp's server does them.

- request.py   chat_prompt(): OpenAI messages / tools / tool_choice validated into a ChatPrompt
- render.py    plan_chat(): the prompt through the model's own template (tools included,
               polyfilled where the template has none), the family, the forced-call grammar
- families.py  each family's tool-call syntax (Hermes/Qwen, Qwen3-Coder, GLM-4.5, Kimi K2,
               DeepSeek V3/R1, Mistral, Llama 3.x, generic JSON); harmony.py: gpt-oss
- stream.py    StreamParser: output text in, Content / Reasoning / ToolCallStart / ToolCallArgs out
- grammar.py   GBNF for tool_choice required / a named function
"""
from .families import detect
from .render import ChatPlan, plan_chat, render_prompt
from .request import ChatPrompt, ParsedMessage, ToolCall, ToolRequestError, chat_prompt
from .stream import Content, Reasoning, StreamParser, ToolCallArgs, ToolCallStart

__all__ = ["ChatPlan", "ChatPrompt", "Content", "ParsedMessage", "Reasoning", "StreamParser", "ToolCall",
           "ToolCallArgs", "ToolCallStart", "ToolRequestError", "chat_prompt", "detect", "plan_chat", "render_prompt"]
