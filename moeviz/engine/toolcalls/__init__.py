"""Tool calling and reasoning for chat requests, as llama.cpp's server does them.

- request.py   chat_prompt(): OpenAI messages / tools / tool_choice validated into a ChatPrompt
- render.py    plan_chat(): the prompt through the model's own template (tools included,
               polyfilled where the template has none), the family, the forced-call grammar
- families.py  each family's tool-call syntax (Hermes/Qwen, Qwen3-Coder, GLM-4.5, Kimi K2,
               DeepSeek V3/R1, Mistral, Llama 3.x, generic JSON) and detect(), which tells them apart;
               harmony.py: gpt-oss; kimi3.py: Kimi K3; minimax3.py: MiniMax-M3; tagged.py: Hy3,
               Seed-OSS, Ling 3.0, Qwen3-Coder's thinking templates (poolside Laguna reads as
               GLM-4.5); jsontags.py: Nemotron Nano v2, GigaChat 3.1; jsonmarks.py: Functionary v3.1 / v3.2,
               Firefunction v2, Apertus; minicpm5.py: MiniCPM5; gemma.py, cohere.py,
               lfm2.py, solar.py, jsonforms.py: the rest; argschema.py: argument values typed
               by the tool's JSON schema; tagvalues.py: where a tagged value ends
- stream.py    StreamParser: output text in, Content / Reasoning / ToolCallStart / ToolCallArgs out
- grammar.py   GBNF for tool_choice required / a named function
"""
from .families import detect
from .render import ChatPlan, plan_chat, render_prompt
from .request import ChatPrompt, ParsedMessage, ToolCall, ToolRequestError, chat_prompt
from .stream import Content, Reasoning, StreamParser, ToolCallArgs, ToolCallStart

__all__ = ["ChatPlan", "ChatPrompt", "Content", "ParsedMessage", "Reasoning", "StreamParser", "ToolCall",
           "ToolCallArgs", "ToolCallStart", "ToolRequestError", "chat_prompt", "detect", "plan_chat", "render_prompt"]
