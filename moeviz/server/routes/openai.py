"""The OpenAI-compatible API: `GET /v1/models`, `POST /v1/completions`,
`POST /v1/chat/completions` (SSE streaming and not), as llama-cpp-python's server
implements them (docs/openai-api.md), with routing in the answer on request
(`return_routed_experts`: SGLang's `sgl_ext`, plus moeviz's `moeviz` object).

Every request is a run like a page's (../api_runs.py). Errors are OpenAI's error object,
translated once here (the route class) from the app's own (errors.client_message /
client_status).
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..api_runs import ApiRun, ClientGone, RunError, chat_chunks, finished, start_run, start_runs
from ..context import ServerContext
from ..errors import client_message, client_status, translating_route
from ..limits import read_limited
from ..openai_shapes import ApiRequest, ApiRequestError, combined_response, error_body, parse_request
from ...trace.jsontext import parse_json


def openai_error(e: BaseException) -> JSONResponse:
    status = client_status(e)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(client_message(e), status, getattr(e, "param", None)), status_code=status,
                        headers=headers)


OpenAIRoute = translating_route(openai_error)   # every /v1 handler's errors in OpenAI's error object


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


class ApiNotFound(ApiRequestError):
    status = 404


async def read_body(request: Request, max_bytes: int):
    """A request's JSON body (any API surface): within the size limit, one 400 for every way it is not JSON."""
    raw = await read_limited(request, max_bytes)
    return parse_json(raw, "the request body", ApiRequestError)   # every way JSON fails: a 400


def served_model_id(ctx: ServerContext) -> str:
    return ctx.settings.api.model_id or Path(ctx.engine.info.path).name


def router(ctx: ServerContext) -> APIRouter:
    settings = ctx.settings
    api = settings.api
    r = APIRouter(route_class=OpenAIRoute)
    model_id = served_model_id(ctx)

    check_key = ctx.guard.check      # Bearer or x-api-key (auth.py)

    async def body_of(request: Request) -> dict:
        return await read_body(request, api.max_body_bytes)

    @r.get("/v1/models")
    def models() -> dict:
        # public, as in llama.cpp's server (its /v1/models needs no key)
        return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "me", "permissions": []}]}

    @r.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        req = parse_request(await body_of(request), chat=False, max_tokens_cap=settings.max_tokens,
                            defaults=settings.run_defaults)
        return await answer(request, req)

    @r.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req = parse_request(await body_of(request), chat=True, max_tokens_cap=settings.max_tokens,
                            defaults=settings.run_defaults)
        return await answer(request, req)

    @r.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown(rest: str):
        raise ApiNotFound(f"no such endpoint: /v1/{rest[:80]}")

    async def answer(request: Request, req: ApiRequest):
        if req.n > 1:
            return await answers(request, req)
        run = await start_run(ctx, request, req, model_id=model_id, prompt_param="messages" if req.chat else "prompt")
        base_url = str(request.base_url)
        headers = {"X-Moeviz-Run": run.run_id}
        if not req.stream:
            return await whole_answer(request, run, base_url, headers)
        return StreamingResponse(stream(run, base_url), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    async def answers(request: Request, req: ApiRequest):
        """n > 1: one run per choice (start_runs), answered together."""
        runs = await start_runs(ctx, request, req, model_id=model_id,
                                prompt_param="messages" if req.chat else "prompt")
        base_url = str(request.base_url)
        headers = {"X-Moeviz-Run": ",".join(run.run_id for run in runs)}
        if req.stream:
            return StreamingResponse(stream_many(runs, base_url), media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache"})
        try:
            done = await asyncio.gather(*(finished(run, request) for run in runs))
        except ClientGone:
            return JSONResponse(error_body("the client closed the request", 400), status_code=400)
        except RunError as e:
            return JSONResponse(error_body(e.one_line(), e.status), status_code=e.status, headers=headers)
        finally:
            for run in runs:
                run.cancel_unless_finished()
        return JSONResponse(combined_response(list(done), base_url), headers=headers)

    async def stream_many(runs: list[ApiRun], base_url: str):
        """The choices' chunks as they come, each carrying its index; then one usage chunk."""
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(run):
            try:
                async for chunk in chat_chunks(run, base_url):
                    await merged.put(chunk)
                routing = run.answer.routing_chunk()
                if routing is not None:
                    await merged.put(routing)
            except RunError as e:
                await merged.put(error_body(e.one_line(), e.status))
            finally:
                await merged.put(None)

        if runs[0].req.chat:
            for run in runs:
                yield sse(run.answer.role_chunk())
        tasks = [asyncio.create_task(pump(run)) for run in runs]
        try:
            left = len(runs)
            while left:
                chunk = await merged.get()
                if chunk is None:
                    left -= 1
                else:
                    yield sse(chunk)
            if runs[0].req.include_usage:
                usage = runs[0].answer.usage_chunk()
                completion = sum(run.answer.finish.n_generated for run in runs if run.answer.finish)
                usage["usage"] = {"prompt_tokens": usage["usage"]["prompt_tokens"], "completion_tokens": completion,
                                  "total_tokens": usage["usage"]["prompt_tokens"] + completion}
                yield sse(usage)
        finally:
            for task in tasks:
                task.cancel()
            for run in runs:
                run.cancel_unless_finished()
        yield "data: [DONE]\n\n"

    async def whole_answer(request: Request, run: ApiRun, base_url: str, headers: dict):
        try:
            answer = await finished(run, request)
        except ClientGone:
            return JSONResponse(error_body("the client closed the request", 400), status_code=400)
        except RunError as e:
            return JSONResponse(error_body(e.one_line(), e.status), status_code=e.status, headers=headers)
        return JSONResponse(answer.response(base_url), headers=headers)

    async def stream(run: ApiRun, base_url: str):
        answer = run.answer
        if run.req.chat:
            yield sse(answer.role_chunk())
        try:
            async for chunk in chat_chunks(run, base_url):      # the text's chunks, then the finishing one
                yield sse(chunk)
            routing = answer.routing_chunk()       # current SGLang: sglext in a chunk of its own
            if routing is not None:
                yield sse(routing)
            if run.req.include_usage:
                yield sse(answer.usage_chunk())
        except RunError as e:      # the run failed after the stream began: OpenAI's error object, then the end
            yield sse(error_body(e.one_line(), e.status))
        yield "data: [DONE]\n\n"

    return r
