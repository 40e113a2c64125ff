"""Anthropic's Messages API: `POST /v1/messages` (streaming and not: system, content
blocks, tool_use / tool_result, thinking) and `POST /v1/messages/count_tokens`, in the
shapes of anthropic-sdk-python's types and of llama-server (server-task.cpp
to_json_anthropic / to_json_anthropic_stream).

A request becomes a chat-completion body (../api_convert.py), runs as every API run
does (../api_runs.py: live in the page, a permalink), and its answer, or its stream of
chat chunks, is written in Anthropic's shapes here. Anthropic's format has no routing
field: `return_routed_experts` puts SGLang's routed experts and moeviz's own in a
`moeviz` object (the message's, and the `message_delta` event's when streaming).
Errors are Anthropic's error object ({"type": "error", "error": {type, message}}).
"""
from __future__ import annotations

import hashlib
import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..api_convert import anthropic_thinking_display, anthropic_to_chat
from ..api_runs import ClientGone, RunError, chat_chunks, finished, start_run, stop_sequence
from ..context import ServerContext
from ..errors import client_message, client_status, translating_route
from ..openai_shapes import RunAnswer, parse_request
from .openai import read_body, served_model_id

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_body(message: str, status: int) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def anthropic_error(e: BaseException) -> JSONResponse:
    return JSONResponse(error_body(client_message(e), client_status(e)), status_code=client_status(e))


AnthropicRoute = translating_route(anthropic_error)   # every handler's errors in Anthropic's error object


def sse(event: dict) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


def message_id(answer: RunAnswer) -> str:
    return "msg_" + uuid.UUID(answer.id[-36:]).hex      # the same uuid as the run's chat id


def stop_reason(answer: RunAnswer) -> tuple[str, str | None]:
    seq = stop_sequence(answer)
    if seq is not None and answer.finish_reason == "stop":
        return "stop_sequence", seq
    return STOP_REASONS.get(answer.finish_reason, "end_turn"), None


def signature(thinking: str) -> str:
    """A thinking block's `signature`: opaque to clients, which send it back unchanged (the
    SDK's ThinkingBlock requires one; some clients drop a block whose signature is empty).
    Here a digest of the thinking, the same streamed or not; not checked when it comes back."""
    return "moeviz:" + hashlib.sha256(thinking.encode("utf-8")).hexdigest()


def content_blocks(message: dict, display: str = "summarized") -> list[dict]:
    """An OpenAI chat message's parts as Anthropic content blocks: thinking, text, tool_use
    (`display`: api_convert.anthropic_thinking_display's; "omitted": the thinking block's
    text left out, its signature kept; "none": no thinking block)."""
    blocks = []
    if message.get("reasoning_content") and display != "none":
        thinking = message["reasoning_content"]
        blocks.append({"type": "thinking", "thinking": "" if display == "omitted" else thinking,
                       "signature": signature(thinking)})
    if message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
        except ValueError:
            args = {}
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                       "input": args if isinstance(args, dict) else {}})
    return blocks


def usage(answer: RunAnswer, output_tokens: int | None = None) -> dict:
    f = answer.finish
    return {"input_tokens": f.n_prompt if f else answer.n_prompt, "output_tokens":
            output_tokens if output_tokens is not None else (f.n_generated if f else 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def moeviz_object(answer: RunAnswer, ext: dict, base_url: str) -> dict:
    """moeviz's extension: the run and its permalink, and the routing when asked."""
    obj = {"run": answer.run_id, "permalink": answer.permalink_url(base_url)}
    if ext:
        obj.update(ext["moeviz"], routed_experts=ext["sgl_ext"]["routed_experts"])
    return obj


def message(answer: RunAnswer, base_url: str, display: str = "summarized") -> dict:
    chat = answer.response(base_url)["choices"][0]
    reason, seq = stop_reason(answer)
    ext = {k: chat[k] for k in ("sgl_ext", "moeviz") if k in chat}
    return {"id": message_id(answer), "type": "message", "role": "assistant", "model": answer.model,
            "content": content_blocks(chat["message"], display), "stop_reason": reason, "stop_sequence": seq,
            "usage": usage(answer), "moeviz": moeviz_object(answer, ext, base_url)}


class MessageStream:
    """Chat chunks in, Anthropic's stream events out: message_start, then per content
    block content_block_start / content_block_delta... / content_block_stop (thinking,
    text and each tool_use its own block, in order), then message_delta and message_stop.
    A thinking block ends as Anthropic's does: a signature_delta, then its stop."""

    def __init__(self, answer: RunAnswer, base_url: str, display: str = "summarized"):
        self.answer, self.base_url, self.display = answer, base_url, display
        self.started = False
        self.block: tuple | None = None      # (kind, tool call index) of the open block
        self.index = -1
        self.thinking: list[str] = []        # the open thinking block's text, for its signature

    def events(self, chunk: dict) -> list[dict]:
        out = []
        if not self.started:
            self.started = True
            out.append({"type": "message_start", "message": {
                "id": message_id(self.answer), "type": "message", "role": "assistant", "model": self.answer.model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(self.answer, 0)}})
        choice = chunk["choices"][0]
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content") and self.display != "none":
            out += self._open(("thinking", None), {"type": "thinking", "thinking": "", "signature": ""})
            self.thinking.append(delta["reasoning_content"])
            if self.display != "omitted":
                out.append(self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
        if delta.get("content"):
            out += self._open(("text", None), {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            if call.get("id"):
                out += self._open(("tool_use", call["index"]), {"type": "tool_use", "id": call["id"],
                                                                "name": fn.get("name", ""), "input": {}})
            if fn.get("arguments"):
                out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
        if choice.get("finish_reason") is not None:
            out += self._close()
            reason, seq = stop_reason(self.answer)
            ext = {k: choice[k] for k in ("sgl_ext", "moeviz") if k in choice}
            out.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                        "usage": usage(self.answer),
                        "moeviz": moeviz_object(self.answer, ext, self.base_url)})
            out.append({"type": "message_stop"})
        return out

    def _open(self, key: tuple, block: dict) -> list[dict]:
        if self.block == key:
            return []
        out = self._close()
        self.index += 1
        self.block = key
        return out + [{"type": "content_block_start", "index": self.index, "content_block": block}]

    def _close(self) -> list[dict]:
        if self.block is None:
            return []
        out = []
        if self.block[0] == "thinking":
            out.append(self._delta({"type": "signature_delta", "signature": signature("".join(self.thinking))}))
            self.thinking = []
        self.block = None
        return out + [{"type": "content_block_stop", "index": self.index}]

    def _delta(self, delta: dict) -> dict:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}


def router(ctx: ServerContext) -> APIRouter:
    settings = ctx.settings
    r = APIRouter(route_class=AnthropicRoute)
    model_id = served_model_id(ctx)

    async def chat_request(request: Request):
        ctx.guard.check(request)        # x-api-key, as Anthropic's clients send it (or Bearer)
        given = await read_body(request, settings.api.max_body_bytes)
        req = parse_request(anthropic_to_chat(given), chat=True, max_tokens_cap=settings.max_tokens,
                            defaults=settings.run_defaults)
        req.routed_experts_format = "sglang"      # the moeviz object carries SGLang's form
        return req, anthropic_thinking_display(given)

    @r.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request):
        req, _ = await chat_request(request)
        tokens = await run_in_threadpool(ctx.engine.prompt_tokens, req.prompt)
        return {"input_tokens": len(tokens)}

    @r.post("/v1/messages")
    async def messages(request: Request):
        req, display = await chat_request(request)
        run = await start_run(ctx, request, req, model_id=model_id, prompt_param="messages")
        base_url = str(request.base_url)
        headers = {"X-Moeviz-Run": run.run_id}
        if not req.stream:
            try:
                answer = await finished(run, request)
            except ClientGone:
                return JSONResponse(error_body("the client closed the request", 400), status_code=400)
            return JSONResponse(message(answer, base_url, display), headers=headers)
        return StreamingResponse(stream(run, base_url, display), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    async def stream(run, base_url: str, display: str):
        writer = MessageStream(run.answer, base_url, display)
        try:
            async for chunk in chat_chunks(run, base_url):
                for event in writer.events(chunk):
                    yield sse(event)
        except RunError as e:        # the run failed after the stream began: Anthropic's error event
            yield sse(error_body(client_message(e), e.status))

    return r
