"""`create_app(engine, settings)`: the app factory. It builds the state every surface
shares (context.ServerContext: the run store, the generation worker, the live list, the
limits) and mounts one router per surface, in the order of `SURFACES`:

| surface                      | module            | paths                                                |
|------------------------------|-------------------|------------------------------------------------------|
| page and permalinks          | routes/page.py    | `/`, `/r/<id>`, `/r/<id>/preview.png`, `/api/model`, `/api/prompts`, `/api/limits` |
| runs and uploads             | routes/runs.py    | `/api/runs/<id>[.moetrace]`, `/api/runs/<id>/stats`, `POST /api/runs`, `/api/live` |
| live websocket               | routes/socket.py  | `/ws` (the protocol itself: protocol.py)             |
| health and metrics           | routes/metrics.py | `/health`, `/metrics`                                |
| Anthropic Messages API       | routes/anthropic.py | `/v1/messages`, `/v1/messages/count_tokens`        |
| OpenAI Responses API         | routes/responses.py | `/v1/responses`, `/v1/responses/<id>[/input_items]` |
| llama-server's extras        | routes/extras.py  | `/tokenize`, `/detokenize`, `/apply-template`, `/props`, `/slots` |
| OpenAI API                   | routes/openai.py  | `/v1/*` (the HTTP APIs: not with `--no-api`)         |

`--api-key` (auth.py) guards every surface that shows prompts or output; CORS
(`--allowed-origins`) answers only the origins given.

Handlers stay thin: validation is in requests.py / openai_shapes.py, a run's life in
worker.py (a thread) and api_runs.py, message shapes in moeviz.trace.messages.
"""
from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from .config import ApiSettings, ServerSettings, default_data_dir
from .context import ServerContext
from .errors import install as install_error_handlers
from .routes import anthropic, extras, metrics, openai, page, responses, runs, socket

__all__ = ["ApiSettings", "ServerSettings", "create_app", "default_data_dir", "SURFACES"]

# (name, router(ctx), mounted when) in mounting order: the OpenAI API's `/v1/{rest}` catch-all comes last
SURFACES = (
    ("page", page.router, lambda s: True),
    ("runs", runs.router, lambda s: True),
    ("live", socket.router, lambda s: True),
    ("metrics", metrics.router, lambda s: True),
    ("anthropic", anthropic.router, lambda s: s.api.enabled),
    ("responses", responses.router, lambda s: s.api.enabled),
    ("extras", extras.router, lambda s: s.api.enabled),
    ("openai", openai.router, lambda s: s.api.enabled),
)


def create_app(engine, settings: ServerSettings | None = None) -> FastAPI:
    ctx = ServerContext.build(engine, (settings or ServerSettings()).effective())

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        ctx.worker.stop()

    app = FastAPI(title="moeviz", docs_url=None, redoc_url=None, lifespan=lifespan)
    install_error_handlers(app)
    app.state.ctx = ctx
    app.state.settings = ctx.settings
    app.state.engine = engine
    app.state.worker = ctx.worker
    app.state.token_latency = ctx.token_latency
    for _name, make_router, wanted in SURFACES:
        if wanted(ctx.settings):
            app.include_router(make_router(ctx))
    app.mount("/static", StaticFiles(directory=str(ctx.settings.web_dir)), name="static")
    if ctx.settings.allowed_origins:
        # browser chat UIs on these origins may call the APIs (preflight answered here, before any
        # route: it carries no key); any other origin gets no CORS headers (a preflight: 400)
        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.settings.allowed_origins),
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"], allow_headers=["*"],
                           expose_headers=["X-Moeviz-Run"], max_age=600)
    return app
