"""Watching the server: `/health` (llama-server's shape) and `/metrics` (Prometheus text,
../metrics.py; absent with `serve --no-metrics`)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from ..context import ServerContext
from ..metrics import CONTENT_TYPE


def router(ctx: ServerContext) -> APIRouter:
    r = APIRouter()
    engine, worker = ctx.engine, ctx.worker

    @r.get("/health")
    def health():
        # a model whose rpc-server went away cannot run again: 503, with the run's one line
        broken = engine.unusable() if callable(getattr(engine, "unusable", None)) else None
        if isinstance(broken, str) and broken:
            return JSONResponse({"status": "error", "error": broken, "queue": worker.queue_length}, status_code=503)
        return {"status": "ok", "queue": worker.queue_length}

    if ctx.metrics is not None:
        @r.get("/metrics", dependencies=[Depends(ctx.guard.dependency())])   # counts of what clients sent
        def prometheus_metrics() -> Response:
            return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)

    return r
