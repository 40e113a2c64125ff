"""Stored runs and uploads: `/api/runs/<id>` (JSON, or `.moetrace` with `?head=n`),
`/api/runs/<id>/stats`, `POST /api/runs` (an uploaded trace gets a permalink), and
`/api/live` (runs in flight and recent, as the page's list shows them)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...analysis import TOKEN_SELECTIONS, AnalysisError, to_json, trace_stats
from ...errors import Forbidden
from ..context import ServerContext
from ..trace_json import json_pieces
from ..uploads import store_upload


def router(ctx: ServerContext) -> APIRouter:
    r = APIRouter(dependencies=[Depends(ctx.guard.dependency())])     # every route: prompts and output
    store, settings = ctx.store, ctx.settings

    @r.get("/api/runs/{run_id}")
    def run_json(run_id: str, head: int | None = None):
        if run_id.endswith(".moetrace"):
            run_id = run_id[: -len(".moetrace")]
            # ?head=n: the first n tokens, marked partial, when the run is longer (moeviz/trace/partial.py)
            data = ctx.stored.head(run_id, max(1, head)) if head is not None else None
            return Response(data or store.load_bytes(run_id), media_type="application/octet-stream")
        # in pieces, pulled in the threadpool: one encode of a large run held the GIL, and
        # with it the event loop, for seconds (trace_json.py)
        return StreamingResponse(json_pieces(store.load(run_id)), media_type="application/json")

    @r.get("/api/runs/{run_id}/stats")
    def run_stats(run_id: str, tokens: str = "all"):
        """What `moeviz stats --json` prints for the stored run (sync: FastAPI runs it in
        a worker thread, off the event loop)."""
        if tokens not in TOKEN_SELECTIONS:
            raise AnalysisError(f"tokens must be one of {', '.join(TOKEN_SELECTIONS)}, not {tokens!r}")
        stats = trace_stats(store.load(run_id), tokens, name=run_id)
        return JSONResponse(to_json({"traces": [stats], "comparison": None}))

    @r.post("/api/runs")
    async def upload_run(request: Request):
        if settings.public:
            raise Forbidden("this server's permalinks are read-only")
        run_id = await store_upload(request, store, settings.max_upload_bytes, ctx.uploads_reading)
        return {"id": run_id, "url": f"/r/{run_id}"}

    @r.get("/api/live")
    def api_live() -> dict:
        return {"runs": ctx.live_runs.listing()}

    return r
