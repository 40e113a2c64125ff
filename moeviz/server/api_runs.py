"""One HTTP API request as a run: checked before it is queued (so a bad prompt is an
HTTP error, not a broken stream), queued on the generation worker like a page's run
(listed live, stored behind a permalink unless `--no-store-api`), its engine events
handed to the request's handler on the event loop. Every API surface (OpenAI's,
Anthropic's, Responses) runs its requests through here; only the shapes differ.
"""
from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from ..engine import TokenRouted
from ..engine.text import PromptError
from ..errors import MoevizError
from .context import ServerContext
from ..llama.sampler import check_run_settings
from .openai_shapes import ApiRequest, ApiRequestError, RunAnswer, clamp_to_context
from .openai_tools import apply_plan, plan_for
from .requests import GenerateRequest
from .worker import Job

POLL_S = 0.5          # how often a non-streaming request checks that its client is still there


class ClientGone(Exception):
    """The client of a non-streaming request closed its connection."""


class ApiRun:
    """`events()` yields (engine event, message, pieces) until the run ends; the event is
    None when the run failed (the message then holds its error and status)."""

    def __init__(self, ctx: ServerContext, req: ApiRequest, answer: RunAnswer, job: Job, events: asyncio.Queue):
        self.ctx, self.req, self.answer, self.job, self._events = ctx, req, answer, job, events

    @property
    def run_id(self) -> str:
        return self.job.run_id

    async def next(self, request=None):
        """The next event; with `request`, raises ClientGone when its client has left."""
        if request is None:
            return await self._events.get()
        while True:
            try:
                return await asyncio.wait_for(self._events.get(), POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise ClientGone() from None

    def cancel_unless_finished(self) -> None:
        if self.answer.finish is None:     # the client left or the handler gave up: the run is cancelled
            self.ctx.worker.cancel(self.job)


async def start_run(ctx: ServerContext, request, req: ApiRequest, *, model_id: str, prompt_param: str,
                    answer_class=RunAnswer) -> ApiRun:
    """Check the prompt and the limits, then queue the run. `prompt_param`: the field an
    error about the prompt names (OpenAI's error `param`)."""
    runs = await start_runs(ctx, request, req, model_id=model_id, prompt_param=prompt_param,
                            answer_class=answer_class, n=1)
    return runs[0]


async def start_runs(ctx: ServerContext, request, req: ApiRequest, *, model_id: str, prompt_param: str,
                     answer_class=RunAnswer, n: int | None = None) -> list[ApiRun]:
    """start_run for a request's `n` choices (default req.n): checked once, then one run
    per choice (its own seed: req.choice_settings), queued together (worker.submit_group:
    they start together when as many slots are free, as llama-server's child tasks)."""
    n = req.n if n is None else n
    engine, settings = ctx.engine, ctx.settings
    try:
        tokens = await run_in_threadpool(engine.prompt_tokens, req.prompt)
    except PromptError as e:
        e.param = prompt_param
        raise
    if settings.max_prompt_tokens is not None and len(tokens) > settings.max_prompt_tokens:
        raise ApiRequestError(f"the prompt is {len(tokens)} tokens; this server's limit is "
                              f"{settings.max_prompt_tokens}", prompt_param)
    if req.routed_experts_start_len > len(tokens):
        raise ApiRequestError(f"routed_experts_start_len {req.routed_experts_start_len} is past the prompt's "
                              f"{len(tokens)} tokens", "routed_experts_start_len")
    clamp_to_context(req, len(tokens), engine.lm.n_ctx_seq)     # llama-server's limit: what the context has left
    req.chat_plan = await run_in_threadpool(plan_for, engine, req.prompt)   # tools, reasoning (openai_tools.py)
    apply_plan(req, req.chat_plan)                              # a forced tool choice's grammar
    # bad GBNF, a logit_bias token outside the vocabulary: a 400 here, before the run is queued
    await run_in_threadpool(check_run_settings, engine.lm, req.settings)
    if ctx.limiter is not None:
        ctx.limiter.check(request.client.host if request.client else "?")

    runs = [_make_run(ctx, req, i if n > 1 else None, model_id, answer_class) for i in range(n)]
    if n == 1:
        ctx.worker.submit(runs[0].job)
    else:
        ctx.worker.submit_group([run.job for run in runs])
    return runs


def _make_run(ctx: ServerContext, req: ApiRequest, index: int | None, model_id: str, answer_class) -> ApiRun:
    """One run of the request (choice `index` of n, None: the only one), not yet queued."""
    engine, settings = ctx.engine, ctx.settings
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    piece = engine.lm.piece
    candidates_row = [None]     # the worker thread's copy: the candidates the next token is among

    def on_event(ev, msg):
        # on the worker thread, between decodes: the only place the vocabulary's
        # pieces may be read while a run decodes (LoadedModel.piece reuses one buffer)
        pieces = None
        if req.logprobs is not None and isinstance(ev, TokenRouted):
            wanted = {ev.token.id}
            if candidates_row[0] is not None:
                wanted.update(int(i) for i in candidates_row[0][: req.logprobs])
            pieces = {i: piece(i) for i in wanted}
        if req.logprobs is not None and ev is not None and getattr(ev, "routing", None) is not None \
                and ev.routing.candidate_ids is not None:
            candidates_row[0] = ev.routing.candidate_ids[-1]
        loop.call_soon_threadsafe(events.put_nowait, (ev, msg, pieces))

    sampling = req.settings if index is None else req.choice_settings(index)
    job = Job(GenerateRequest(req.prompt, None, sampling, False, candidates=req.candidates),
              send=lambda _text, _t: None, source="api", store=settings.api.store, on_event=on_event)
    if index is None:
        answer = answer_class(req, job.run_id, model_id, list(engine.info.moe_layers))
    else:
        answer = answer_class(req, job.run_id, model_id, list(engine.info.moe_layers), index=index)
    return ApiRun(ctx, req, answer, job, events)


class RunError(MoevizError):
    """A run that failed after it was queued: its one line and status, from the worker's error message."""

    def __init__(self, msg: dict):
        super().__init__(msg.get("message", "the run failed"))
        self.status = msg.get("status", 500)


async def finished(run: ApiRun, request) -> RunAnswer:
    """Wait for the whole run (a non-streaming request): its answer, finished. ClientGone
    when the client leaves first, RunError when the run fails; either way nothing runs on."""
    try:
        while True:
            ev, msg, pieces = await run.next(request)
            if ev is None:
                raise RunError(msg)
            run.answer.add(ev, msg, pieces)
            if run.answer.finish is not None:
                return run.answer
    finally:
        run.cancel_unless_finished()


async def chat_chunks(run: ApiRun, base_url: str):
    """A streaming chat run as OpenAI's chat-completion chunks: one per delta of text,
    reasoning or tool call (openai_tools.ChatOutput), then the final one (finish_reason,
    routing extensions). Other formats translate these, as llama-server translates its
    chat diffs. RunError when the run fails; a client that leaves cancels the run."""
    answer = run.answer
    try:
        while True:
            ev, msg, pieces = await run.next()
            if ev is None:
                raise RunError(msg)
            text = answer.add(ev, msg, pieces)
            chunk = answer.text_chunk(text) if text else None
            if chunk:
                yield chunk
            if answer.finish is not None:
                yield answer.final_chunk(base_url)
                return
    finally:
        run.cancel_unless_finished()


def stop_sequence(answer: RunAnswer) -> str | None:
    """The stop string that ended the run (None when none did)."""
    if answer.finish is None or answer.finish.reason != "stop":
        return None
    text = answer.text.text
    found = [(text.find(s), s) for s in answer.request.settings.stop if s and text.find(s) >= 0]
    return min(found)[1] if found else None
