"""`create_app(engine, settings)`: the page, its JSON, and the live websocket.

Handlers stay thin: validation is in requests.py, generation in worker.py (a
thread), message shapes in moeviz.trace.messages.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import resources
from ..analysis import TOKEN_SELECTIONS, AnalysisError, to_json, trace_stats
from ..page import render_not_found, render_page
from ..preview import render_png, run_description, run_title
from ..prompts import load_prompts, model_kind, suits
from ..trace import loads
from ..trace.io import to_json_dict
from ..trace.messages import error_message, model_message
from ..trace.partial import HEAD_TOKENS, head_bytes, open_stored, trace_of
from ..trace.schema import model_description
from ..trace.store import RunNotFound, RunStore
from ..errors import Forbidden, MoevizError
from .errors import client_message, install as install_error_handlers
from .limits import RateLimiter, read_limited
from .requests import RequestError, generate_request, parse_message
from .worker import GenerationWorker, Job, dumps
from .connections import CLOSE_IDLE, CLOSE_TOO_MANY, ConnectionLimits, WebsocketLimits
from .uploads import MAX_READING, store_upload
from .live import LiveRuns, Viewer
from .openai_api import ApiSettings, mount as mount_openai_api
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, ServerMetrics


def default_data_dir() -> Path:
    base = os.environ.get("MOEVIZ_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "moeviz")
    return Path(base) / "runs"


@dataclasses.dataclass
class ServerSettings:
    prompts_dir: Path = dataclasses.field(default_factory=resources.prompts_dir)
    max_prompt_tokens: int = 2048
    max_tokens: int = 1024
    max_message_bytes: int = 64 * 1024
    web_dir: Path = dataclasses.field(default_factory=resources.web_dir)   # the templates and /static/
    data_dir: Path | None = None          # where permalinked runs live (None: default_data_dir())
    max_runs: int = 500
    max_run_bytes: int = 256 << 20        # all stored runs together
    max_upload_bytes: int = 32 << 20
    public: bool = False                  # a shared hosted server (docs/public-mode.md)
    rate_limit_per_minute: int = 12       # generations per client address, public mode only
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)  # public mode only
    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)   # the OpenAI API (openai_api.py)
    metrics: bool = True                  # GET /metrics (metrics.py); False: `serve --no-metrics`
    metrics_per_expert: bool = False      # `serve --metrics-per-expert`: a series per (MoE layer, expert)

    def effective(self) -> "ServerSettings":
        """Public mode caps what a request may cost."""
        if not self.public:
            return self
        return dataclasses.replace(self, max_tokens=min(self.max_tokens, 256),
                                   max_prompt_tokens=min(self.max_prompt_tokens, 512))


def create_app(engine, settings: ServerSettings | None = None) -> FastAPI:
    settings = (settings or ServerSettings()).effective()
    prompts = load_prompts(settings.prompts_dir)
    model = {**model_description(engine.info)}
    store = RunStore(settings.data_dir or default_data_dir(), settings.max_runs, settings.max_run_bytes)
    limiter = RateLimiter(settings.rate_limit_per_minute) if settings.public else None
    sockets = WebsocketLimits(settings.limits) if settings.public else None   # per address, idle timeout
    uploads_reading = asyncio.Semaphore(MAX_READING)
    live_runs = LiveRuns(public=settings.public, show_api_runs=settings.api.show_api_runs)   # any source, watchable
    metrics = ServerMetrics(engine.info.moe_layers, engine.info.n_expert, lambda: worker.load(),
                            per_expert=settings.metrics_per_expert) if settings.metrics else None
    worker = GenerationWorker(engine, settings.max_prompt_tokens, store, live_runs, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        worker.stop()

    app = FastAPI(title="moeviz", docs_url=None, redoc_url=None, lifespan=lifespan)
    install_error_handlers(app)
    app.state.settings = settings
    app.state.engine = engine
    app.state.worker = worker
    # per token: perf_counter when the engine yielded it, when its message was queued
    # for the event loop, when the loop took it, and after the websocket send
    app.state.token_latency = collections.deque(maxlen=10_000)     # the latest tokens: bounded memory

    def render(mode: str, page_model: dict | None = None, **context) -> str:
        return render_page(mode, model=page_model or model, capture=engine.capture.name, public=settings.public,
                           web_dir=settings.web_dir, **context)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render("live")

    def not_found_page(run_id: str) -> HTMLResponse:
        # a person followed a link: a page with a way back, not the API's JSON error
        return HTMLResponse(render_not_found(run_id, settings.web_dir), status_code=404)

    @functools.lru_cache(maxsize=64)
    def preview_png(run_id: str) -> bytes:
        return render_png(store.load(run_id))      # a stored run never changes: cached by id

    # A stored run never changes: its file is opened once (memory-mapped, not checked
    # again) for the permalink page's title and description and for the head a page
    # draws first. Cached by id and file version.
    def version(run_id: str) -> int:
        try:
            return store.path(run_id).stat().st_mtime_ns    # RunNotFound for anything but a well-formed id
        except FileNotFoundError:
            raise RunNotFound("no such run") from None

    @functools.lru_cache(maxsize=4)
    def stored(run_id: str, _version: int):
        return open_stored(store.path(run_id))

    @functools.lru_cache(maxsize=64)
    def page_text(run_id: str, v: int) -> tuple[str, str, dict]:
        trace = trace_of(*stored(run_id, v))
        return run_title(trace), run_description(trace), trace.model

    @functools.lru_cache(maxsize=8)
    def run_head(run_id: str, n: int, v: int) -> bytes | None:
        return head_bytes(*stored(run_id, v), n)

    @app.get("/r/{run_id}", response_class=HTMLResponse)
    def permalink_page(request: Request, run_id: str):
        try:
            title, description, run_model = page_text(run_id, version(run_id))
        except RunNotFound:
            return not_found_page(run_id)
        # the page starts with the run's model (the server's may differ), so its views are
        # built for it before the trace arrives; the trace's head (the whole of a short
        # run) is preloaded, so it arrives while the page's modules load
        return render("replay", page_model=run_model, run_id=run_id, run_title=title, description=description,
                      preview_url=f"{request.base_url}r/{run_id}/preview.png",
                      preload=[f"/api/runs/{run_id}.moetrace?head={HEAD_TOKENS}"])

    @app.get("/r/{run_id}/preview.png")
    def permalink_preview(run_id: str):
        try:
            return Response(preview_png(run_id), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})
        except RunNotFound:
            return not_found_page(run_id)

    @app.get("/api/runs/{run_id}")
    def run_json(run_id: str, head: int | None = None):
        if run_id.endswith(".moetrace"):
            run_id = run_id[: -len(".moetrace")]
            # ?head=n: the first n tokens, marked partial, when the run is longer (moeviz/trace/partial.py)
            data = run_head(run_id, max(1, head), version(run_id)) if head is not None else None
            return Response(data or store.load_bytes(run_id), media_type="application/octet-stream")
        return JSONResponse(to_json_dict(store.load(run_id)))

    @app.get("/api/runs/{run_id}/stats")
    def run_stats(run_id: str, tokens: str = "all"):
        """What `moeviz stats --json` prints for the stored run (sync: FastAPI runs it in
        a worker thread, off the event loop)."""
        if tokens not in TOKEN_SELECTIONS:
            raise AnalysisError(f"tokens must be one of {', '.join(TOKEN_SELECTIONS)}, not {tokens!r}")
        stats = trace_stats(store.load(run_id), tokens, name=run_id)
        return JSONResponse(to_json({"traces": [stats], "comparison": None}))

    @app.post("/api/runs")
    async def upload_run(request: Request):
        if settings.public:
            raise Forbidden("this server's permalinks are read-only")
        run_id = await store_upload(request, store, settings.max_upload_bytes, uploads_reading)
        return {"id": run_id, "url": f"/r/{run_id}"}

    @app.get("/api/model")
    def api_model() -> dict:
        lm = getattr(engine, "lm", None)
        return {**model, "capture": engine.capture.name, "parallel": getattr(engine, "parallel", 1),
                "n_ctx_per_request": getattr(lm, "n_ctx_seq", None)}

    kind = model_kind(model.get("name", ""))

    @app.get("/api/prompts")
    def api_prompts() -> dict:
        # every prompt, each saying whether it suits this server's model; the page offers those first
        return {"model_kind": kind, "prompts": [{**p.to_json(), "suits": suits(p, kind)} for p in prompts.values()]}

    @app.get("/api/limits")
    def api_limits() -> dict:
        return {"max_prompt_tokens": settings.max_prompt_tokens, "max_tokens": settings.max_tokens,
                "max_message_bytes": settings.max_message_bytes}

    @app.get("/health")
    def health():
        # a model whose rpc-server went away cannot run again: 503, with the run's one line
        broken = engine.unusable() if callable(getattr(engine, "unusable", None)) else None
        if isinstance(broken, str) and broken:
            return JSONResponse({"status": "error", "error": broken, "queue": worker.queue_length}, status_code=503)
        return {"status": "ok", "queue": worker.queue_length}

    if metrics is not None:
        @app.get("/metrics")
        def prometheus_metrics() -> Response:
            return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/api/live")
    def api_live() -> dict:
        return {"runs": live_runs.listing()}

    mount_openai_api(app, engine=engine, worker=worker, settings=settings, limiter=limiter)
    app.mount("/static", StaticFiles(directory=str(settings.web_dir)), name="static")

    @app.websocket("/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        host = ws.client.host if ws.client else "?"
        refused = sockets.admit(host) if sockets is not None else None
        if refused:
            await ws.close(code=CLOSE_TOO_MANY, reason=refused)
            return
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()

        def send_threadsafe(text: str, t_event: float) -> None:
            loop.call_soon_threadsafe(out.put_nowait, (text, t_event, time.perf_counter()))

        async def sender() -> None:
            while True:
                text, t_event, t_queued = await out.get()
                t_dequeued = time.perf_counter()
                await ws.send_text(text)
                if t_event:
                    app.state.token_latency.append((t_event, t_queued, t_dequeued, time.perf_counter()))

        send_task = asyncio.create_task(sender())
        out.put_nowait((dumps(model_message(model)), 0.0, 0.0))
        viewer = Viewer(lambda text: send_threadsafe(text, 0.0))
        job: Job | None = None
        try:
            while True:
                if sockets is None:
                    event = await ws.receive()
                else:   # public mode: a connection with nothing running may not sit idle
                    idle = (job is None or job.done.is_set()) and viewer.watching is None
                    event = await sockets.receive(ws, idle)
                    if event is None:
                        await ws.close(code=CLOSE_IDLE, reason=sockets.idle_reason())
                        break
                if event["type"] == "websocket.disconnect":
                    break
                raw = event.get("text") if event.get("text") is not None else event.get("bytes", b"")
                try:
                    msg = parse_message(raw, settings.max_message_bytes)
                    kind = msg["type"]
                    if kind == "generate":
                        if job is not None and not job.done.is_set():
                            raise RequestError("a generation is already running on this connection; "
                                               "send cancel or wait for done")
                        req = generate_request(msg, prompts, settings.max_tokens)
                        if limiter is not None:
                            limiter.check(ws.client.host if ws.client else "?")
                        live_runs.unwatch(viewer)
                        job = Job(req, send_threadsafe, owner=viewer)
                        worker.submit(job)
                    elif kind == "runs":
                        live_runs.subscribe(viewer)
                    elif kind == "watch":
                        if job is not None and not job.done.is_set():
                            raise RequestError("this connection's own run is in progress; cancel it or wait for done")
                        live_runs.watch(viewer, msg.get("run"))
                    elif kind == "unwatch":
                        live_runs.unwatch(viewer)
                    elif kind == "cancel":
                        if job is not None:
                            worker.cancel(job)
                    else:
                        raise RequestError(f"unknown message type {kind[:40]!r}")
                except Exception as e:   # a MoevizError's line; a bug is logged, the client gets a generic line
                    out.put_nowait((dumps(error_message(client_message(e))), 0.0, 0.0))
        finally:
            if sockets is not None:
                sockets.release(host)
            live_runs.unsubscribe(viewer)
            if job is not None:
                worker.cancel(job)   # a client that leaves cancels its run
            send_task.cancel()

    return app
