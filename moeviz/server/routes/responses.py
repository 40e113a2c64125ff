"""OpenAI's Responses API: `POST /v1/responses` (text or item input, instructions,
function tools, streaming events), in the shapes of the openai SDK's types and of
llama-server (server-task.cpp to_json_oaicompat_resp / _resp_stream).

A request becomes a chat-completion body (../api_convert.py), runs as every API run
does (../api_runs.py), and its answer is written as a `response` object: output items
(reasoning, message with output_text, function_call), usage, status `incomplete` when
max_output_tokens cut it short. Streaming sends response.created / in_progress, each
item's output_item.added, its deltas and its done events, then response.completed,
each with a sequence_number. The format has no routing field: a `moeviz` object on the
response (and on response.completed's) carries the run, its permalink and, with
`return_routed_experts`, SGLang's routed experts and moeviz's weights.

`store` (true unless a request says false) keeps the response in this app's
ResponseStore (../response_store.py): `previous_response_id` continues from it, and
`GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` read and
remove it.
"""
from __future__ import annotations

import json
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..api_convert import responses_input, responses_state, responses_to_chat
from ..api_runs import ClientGone, RunError, chat_chunks, finished, start_run
from ..context import ServerContext
from ..errors import client_message, translating_route
from ..openai_shapes import ApiRequestError, RunAnswer, error_body, parse_request
from ..response_store import ResponseStore
from .anthropic import moeviz_object
from .openai import openai_error, read_body, served_model_id


def responses_error(e: BaseException) -> JSONResponse:
    """OpenAI's error object, with OpenAI's `code` where the error has one
    (previous_response_not_found)."""
    response = openai_error(e)
    code = getattr(e, "code", None)
    if code is None:
        return response
    body = json.loads(response.body)
    body["error"]["code"] = code
    return JSONResponse(body, status_code=response.status_code)


ResponsesRoute = translating_route(responses_error)


def sse(event: dict) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def output_items(message: dict) -> list[dict]:
    """An OpenAI chat message as Responses output items."""
    items = []
    if message.get("reasoning_content"):
        items.append({"id": _id("rs"), "type": "reasoning", "summary": [], "status": "completed",
                      "content": [{"type": "reasoning_text", "text": message["reasoning_content"]}]})
    if message.get("content"):
        items.append({"id": _id("msg"), "type": "message", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": message["content"], "annotations": [],
                                   "logprobs": []}]})
    for call in message.get("tool_calls") or []:
        items.append({"id": "fc_" + call["id"], "type": "function_call", "status": "completed",
                      "call_id": call["id"], "name": call["function"]["name"],
                      "arguments": call["function"]["arguments"]})
    return items


class ResponseShape:
    """The response object's fields around its output (one per request)."""

    def __init__(self, answer: RunAnswer, body: dict, base_url: str, previous_id: str | None, store: bool):
        self.answer, self.body, self.base_url = answer, body, base_url
        self.previous_id, self.store = previous_id, store
        self.id = "resp_" + uuid.UUID(answer.id[-36:]).hex
        self.created = int(time.time())

    def response(self, output: list[dict], ext: dict | None = None, done: bool = True) -> dict:
        answer, f = self.answer, self.answer.finish
        incomplete = done and f is not None and answer.finish_reason == "length"
        resp = {"id": self.id, "object": "response", "created_at": self.created, "model": answer.model,
                "status": ("incomplete" if incomplete else "completed") if done else "in_progress",
                "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None, "error": None,
                "instructions": self.body.get("instructions"), "output": output,
                "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
                "tool_choice": self.body.get("tool_choice", "auto"), "tools": self.body.get("tools") or [],
                "temperature": answer.request.settings.temperature, "top_p": answer.request.settings.top_p,
                "max_output_tokens": self.body.get("max_output_tokens"), "metadata": self.body.get("metadata") or {},
                "text": {"format": {"type": "text"}}, "previous_response_id": self.previous_id,
                "store": self.store, "usage": None}
        if done and f is not None:
            resp["usage"] = {"input_tokens": f.n_prompt, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": f.n_generated, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": f.n_prompt + f.n_generated}
            resp["moeviz"] = moeviz_object(answer, ext or {}, self.base_url)
        return resp


class ResponseStream:
    """Chat chunks in, Responses stream events out (one output item open at a time)."""

    def __init__(self, shape: ResponseShape):
        self.shape = shape
        self.seq = 0
        self.items: list[dict] = []      # finished and open items, in output order
        self.open: tuple | None = None   # (kind, tool call index) of the open item

    def start(self) -> list[dict]:
        r = self.shape.response([], done=False)
        return [self._ev({"type": "response.created", "response": r}),
                self._ev({"type": "response.in_progress", "response": r})]

    def events(self, chunk: dict) -> list[dict]:
        out = []
        choice = chunk["choices"][0]
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content"):
            out += self._add(("reasoning", None), {"id": _id("rs"), "type": "reasoning", "summary": [],
                                                   "content": [], "status": "in_progress"})
            item = self.items[-1]
            item["_text"] = item.get("_text", "") + delta["reasoning_content"]
            out.append(self._ev({"type": "response.reasoning_text.delta", "item_id": item["id"],
                                 "output_index": len(self.items) - 1, "content_index": 0,
                                 "delta": delta["reasoning_content"]}))
        if delta.get("content"):
            out += self._add(("message", None), {"id": _id("msg"), "type": "message", "role": "assistant",
                                                 "status": "in_progress", "content": []})
            item = self.items[-1]
            if "_text" not in item:
                item["_text"] = ""
                out.append(self._ev({"type": "response.content_part.added", "item_id": item["id"],
                                     "output_index": len(self.items) - 1, "content_index": 0,
                                     "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
            item["_text"] += delta["content"]
            out.append(self._ev({"type": "response.output_text.delta", "item_id": item["id"],
                                 "output_index": len(self.items) - 1, "content_index": 0, "delta": delta["content"],
                                 "logprobs": []}))
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            if call.get("id"):
                out += self._add(("function_call", call["index"]), {
                    "id": "fc_" + call["id"], "type": "function_call", "status": "in_progress",
                    "call_id": call["id"], "name": fn.get("name", ""), "arguments": ""})
            if fn.get("arguments") and self.open and self.open[0] == "function_call":
                item = self.items[-1]
                item["arguments"] += fn["arguments"]
                out.append(self._ev({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                                     "output_index": len(self.items) - 1, "delta": fn["arguments"]}))
        if choice.get("finish_reason") is not None:
            out += self._close()
            ext = {k: choice[k] for k in ("sgl_ext", "moeviz") if k in choice}
            out.append(self._ev({"type": "response.completed", "response": self.shape.response(self.items, ext)}))
        return out

    def _ev(self, event: dict) -> dict:
        event["sequence_number"] = self.seq
        self.seq += 1
        return event

    def _add(self, key: tuple, item: dict) -> list[dict]:
        if self.open == key:
            return []
        out = self._close()
        self.open = key
        self.items.append(item)
        return out + [self._ev({"type": "response.output_item.added", "output_index": len(self.items) - 1,
                                "item": dict(item)})]

    def _close(self) -> list[dict]:
        if self.open is None:
            return []
        kind, self.open = self.open[0], None
        i, item = len(self.items) - 1, self.items[-1]
        text = item.pop("_text", "")
        out = []
        if kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            out += [self._ev({"type": "response.output_text.done", "item_id": item["id"], "output_index": i,
                              "content_index": 0, "text": text, "logprobs": []}),
                    self._ev({"type": "response.content_part.done", "item_id": item["id"], "output_index": i,
                              "content_index": 0, "part": part})]
        elif kind == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": text}]
            out.append(self._ev({"type": "response.reasoning_text.done", "item_id": item["id"], "output_index": i,
                                 "content_index": 0, "text": text}))
        else:
            out.append(self._ev({"type": "response.function_call_arguments.done", "item_id": item["id"],
                                 "output_index": i, "name": item["name"], "arguments": item["arguments"]}))
        item["status"] = "completed"
        return out + [self._ev({"type": "response.output_item.done", "output_index": i, "item": item})]


def router(ctx: ServerContext) -> APIRouter:
    settings = ctx.settings
    r = APIRouter(route_class=ResponsesRoute)
    model_id = served_model_id(ctx)
    store = ResponseStore()       # this app's stored responses (in memory, bounded: response_store.py)

    @r.post("/v1/responses")
    async def responses(request: Request):
        ctx.guard.check(request)
        body = await read_body(request, settings.api.max_body_bytes)
        previous_id, keep = responses_state(body)
        previous = store.conversation(previous_id) if previous_id is not None else []
        req = parse_request(responses_to_chat(body, previous), chat=True, max_tokens_cap=settings.max_tokens,
                            defaults=settings.run_defaults)
        req.routed_experts_format = "sglang"      # the moeviz object carries SGLang's form
        conversation = previous + responses_input(body) if keep else None    # what a stored response keeps
        run = await start_run(ctx, request, req, model_id=model_id, prompt_param="input")
        base_url = str(request.base_url)
        shape = ResponseShape(run.answer, body, base_url, previous_id, keep)
        headers = {"X-Moeviz-Run": run.run_id}
        if not req.stream:
            try:
                answer = await finished(run, request)
            except ClientGone:
                return JSONResponse(error_body("the client closed the request", 400), status_code=400)
            chat = answer.response(base_url)["choices"][0]
            ext = {k: chat[k] for k in ("sgl_ext", "moeviz") if k in chat}
            resp = shape.response(output_items(chat["message"]), ext)
            if conversation is not None:
                store.put(resp, conversation)
            return JSONResponse(resp, headers=headers)
        return StreamingResponse(stream(run, shape, base_url, conversation), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    async def stream(run, shape: ResponseShape, base_url: str, conversation: list[dict] | None):
        writer = ResponseStream(shape)
        for event in writer.start():
            yield sse(event)
        try:
            async for chunk in chat_chunks(run, base_url):
                for event in writer.events(chunk):
                    if event["type"] == "response.completed" and conversation is not None:
                        store.put(event["response"], conversation)      # kept before the client can refer to it
                    yield sse(event)
        except RunError as e:      # the run failed after the stream began: an error event, then response.failed
            yield sse(writer._ev({"type": "error", "code": None, "message": client_message(e), "param": None}))
            failed = shape.response(writer.items, done=False)
            failed["status"], failed["error"] = "failed", {"code": "server_error", "message": client_message(e)}
            yield sse(writer._ev({"type": "response.failed", "response": failed}))

    @r.get("/v1/responses/{response_id}")
    def retrieve(request: Request, response_id: str):
        ctx.guard.check(request)
        if request.query_params.get("stream") in ("true", "1"):
            raise ApiRequestError("streaming a stored response again is not supported", "stream")
        return store.response(response_id)

    @r.delete("/v1/responses/{response_id}")
    def delete(request: Request, response_id: str):
        ctx.guard.check(request)
        return store.delete(response_id)

    @r.get("/v1/responses/{response_id}/input_items")
    def input_items(request: Request, response_id: str):
        ctx.guard.check(request)
        return item_list(store.input_items(response_id), request.query_params)

    return r


def item_list(items: list[dict], query) -> dict:
    """OpenAI's list of input items: `order` desc (default) or asc, `limit` 1 to 100
    (default 20), `after` an item id of the list (the page starts after it)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiRequestError("'order' must be asc or desc", "order")
    limit = query.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise ApiRequestError("'limit' must be an integer from 1 to 100", "limit")
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise ApiRequestError(f"'after': no item {after[:80]!r} in this response's input items", "after")
        items = items[ids.index(after) + 1:]
    page = items[:int(limit)]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)}
