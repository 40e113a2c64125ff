"""The OpenAI-compatible API: `GET /v1/models`, `POST /v1/completions`,
`POST /v1/chat/completions` (SSE streaming and not), as llama-cpp-python's server
implements them (docs/openai-api.md), with routing in the answer on request
(`return_routed_experts`: SGLang's `sgl_ext`, plus moeviz's `moeviz` object).

Every request is a run like a page's: queued on the one generation worker, listed live
to the pages (live.py), stored behind a permalink unless `--no-store-api`. Errors are
OpenAI's error object, translated once here (the route class) from the app's own
(errors.client_message / client_status).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ..engine import TokenRouted
from ..engine.text import PromptError
from .errors import client_message, client_status
from .limits import read_limited
from .openai_shapes import ApiKeyError, ApiRequest, ApiRequestError, RunAnswer, error_body, parse_request
from .requests import GenerateRequest, RequestError
from .worker import Job

POLL_S = 0.5          # how often a non-streaming request checks that its client is still there


@dataclasses.dataclass
class ApiSettings:
    enabled: bool = True                  # False: `serve --no-api`
    api_key: str | None = None            # `serve --api-key`: Bearer key for /v1/* (not /v1/models)
    store: bool = True                    # False: `serve --no-store-api`, API runs get no permalink
    show_api_runs: bool = False           # `--public` only: list API runs (prompts included) to every page
    model_id: str | None = None           # what /v1/models calls the model (default: the GGUF's file name)
    max_body_bytes: int = 4 << 20


class OpenAIRoute(APIRoute):
    """Any error of a /v1 handler becomes OpenAI's error object with the app's status."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except Exception as e:  # noqa: BLE001 - translated here, once (a bug is logged by client_message)
                return openai_error(e)

        return route


def openai_error(e: BaseException) -> JSONResponse:
    status = client_status(e)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(client_message(e), status, getattr(e, "param", None)), status_code=status,
                        headers=headers)


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


def make_router(*, engine, worker, settings, limiter=None) -> APIRouter:
    """`settings`: the app's ServerSettings (its limits; `.api` an ApiSettings)."""
    api: ApiSettings = settings.api
    router = APIRouter(route_class=OpenAIRoute)
    model_id = api.model_id or Path(engine.info.path).name
    moe_layers = list(engine.info.moe_layers)

    def check_key(request: Request) -> None:
        if api.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), api.api_key.encode()):
            raise ApiKeyError("Invalid API Key")          # llama.cpp's server's words

    async def body_of(request: Request) -> dict:
        raw = await read_limited(request, api.max_body_bytes)
        try:
            body = json.loads(raw)
            json.dumps(body, ensure_ascii=False).encode("utf-8")     # a lone surrogate could not be answered
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiRequestError("the request body is not valid JSON") from None
        except UnicodeEncodeError:
            raise ApiRequestError("the request body holds a lone surrogate (such as \\ud800): not valid Unicode") from None
        except RecursionError:
            raise ApiRequestError("the request body is nested too deeply") from None
        return body

    @router.get("/v1/models")
    def models() -> dict:
        # public, as in llama.cpp's server (its /v1/models needs no key)
        return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "me", "permissions": []}]}

    @router.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        req = parse_request(await body_of(request), chat=False, max_tokens_cap=settings.max_tokens)
        return await answer(request, req)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req = parse_request(await body_of(request), chat=True, max_tokens_cap=settings.max_tokens)
        return await answer(request, req)

    @router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown(rest: str):
        raise ApiNotFound(f"no such endpoint: /v1/{rest[:80]}")

    async def answer(request: Request, req: ApiRequest):
        # Checked before the run is queued, so a bad prompt is an HTTP error, not a broken stream.
        try:
            tokens = await run_in_threadpool(engine.prompt_tokens, req.prompt)
        except PromptError as e:
            raise ApiRequestError(str(e), "messages" if req.chat else "prompt") from None
        if len(tokens) > settings.max_prompt_tokens:
            raise ApiRequestError(f"the prompt is {len(tokens)} tokens; this server's limit is "
                                  f"{settings.max_prompt_tokens}", "messages" if req.chat else "prompt")
        if req.routed_experts_start_len > len(tokens):
            raise ApiRequestError(f"routed_experts_start_len {req.routed_experts_start_len} is past the prompt's "
                                  f"{len(tokens)} tokens", "routed_experts_start_len")
        if limiter is not None:
            try:
                limiter.check(request.client.host if request.client else "?")
            except RequestError as e:
                raise ApiRateLimited(str(e)) from None

        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        piece = engine.lm.piece

        def on_event(ev, msg):
            # on the worker thread, between decodes: the only place the vocabulary's
            # pieces may be read while a run decodes (LoadedModel.piece reuses one buffer)
            pieces = None
            if req.logprobs is not None and isinstance(ev, TokenRouted):
                wanted = {ev.token.id}
                if run.candidates_row is not None:
                    wanted.update(int(i) for i in run.candidates_row[: req.logprobs])
                pieces = {i: piece(i) for i in wanted}
            if req.logprobs is not None and ev is not None and getattr(ev, "routing", None) is not None \
                    and ev.routing.candidate_ids is not None:
                run.candidates_row = ev.routing.candidate_ids[-1]
            loop.call_soon_threadsafe(events.put_nowait, (ev, msg, pieces))

        job = Job(GenerateRequest(req.prompt, None, req.settings, False, candidates=req.candidates),
                  send=lambda _text, _t: None, source="api", store=api.store, on_event=on_event)
        run = RunAnswer(req, job.run_id, model_id, moe_layers)
        run.candidates_row = None          # the worker thread's copy: the candidates the next token is among
        base_url = str(request.base_url)
        headers = {"X-Moeviz-Run": job.run_id}
        worker.submit(job)

        if not req.stream:
            try:
                while True:
                    try:
                        ev, msg, pieces = await asyncio.wait_for(events.get(), POLL_S)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return JSONResponse(error_body("the client closed the request", 400), status_code=400)
                        continue
                    if ev is None:
                        return JSONResponse(error_body(msg["message"], msg.get("status", 500)),
                                            status_code=msg.get("status", 500), headers=headers)
                    run.add(ev, msg, pieces)
                    if run.finish is not None:
                        return JSONResponse(run.response(base_url), headers=headers)
            finally:
                if run.finish is None:
                    worker.cancel(job)

        async def stream():
            try:
                if req.chat:
                    yield sse(run.role_chunk())
                while True:
                    ev, msg, pieces = await events.get()
                    if ev is None:     # the run failed after the stream began: OpenAI's error object, then the end
                        yield sse(error_body(msg["message"], msg.get("status", 500)))
                        break
                    text = run.add(ev, msg, pieces)
                    if text:
                        yield sse(run.text_chunk(text))
                    if run.finish is not None:
                        yield sse(run.final_chunk(base_url))
                        if req.include_usage:
                            yield sse(run.usage_chunk())
                        break
                yield "data: [DONE]\n\n"
            finally:
                if run.finish is None:     # the client left: its run is cancelled, as a page's is
                    worker.cancel(job)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    return router


class ApiNotFound(ApiRequestError):
    status = 404


class ApiRateLimited(ApiRequestError):
    status = 429              # OpenAI's rate_limit_error; the page's websocket says the same line


def mount(app, *, engine, worker, settings, limiter=None) -> None:
    """Add the API to the app (nothing when `settings.api.enabled` is off: `--no-api`)."""
    if settings.api.enabled:
        app.include_router(make_router(engine=engine, worker=worker, settings=settings, limiter=limiter))
