"""The page and its permalinks: `/` (live), `/r/<id>` (a stored run's page), its preview
image, and the JSON the page reads at start (`/api/model`, `/api/prompts`, `/api/limits`)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ...page import render_not_found, render_template, static_url
from ...prompts import model_kind, suits
from ...settings import to_json as settings_table
from ...trace.partial import HEAD_TOKENS
from ...trace.store import RunNotFound
from ..context import ServerContext


def router(ctx: ServerContext) -> APIRouter:
    r = APIRouter()
    settings, engine = ctx.settings, ctx.engine
    kind = model_kind(ctx.model.get("name", ""))

    def key_page() -> HTMLResponse:
        # `serve --api-key` and no key with the request: a page that asks for it (web/js/apikey.js), then reloads
        return HTMLResponse(render_template("keyneeded.html", settings.web_dir, static_url=static_url("live")),
                            status_code=401)

    def not_found_page(run_id: str) -> HTMLResponse:
        # a person followed a link: a page with a way back, not the API's JSON error
        return HTMLResponse(render_not_found(run_id, settings.web_dir), status_code=404)

    @r.get("/", response_class=HTMLResponse)
    def page() -> str:
        return ctx.render("live")

    @r.get("/r/{run_id}", response_class=HTMLResponse)
    def permalink_page(request: Request, run_id: str):
        if not ctx.guard.accepts(request):
            return key_page()
        try:
            title, description, run_model = ctx.stored.page_text(run_id)
        except RunNotFound:
            return not_found_page(run_id)
        # the page starts with the run's model (the server's may differ), so its views are
        # built for it before the trace arrives; the trace's head (the whole of a short
        # run) is preloaded, so it arrives while the page's modules load
        return ctx.render("replay", page_model=run_model, run_id=run_id, run_title=title, description=description,
                          preview_url=f"{request.base_url}r/{run_id}/preview.png",
                          preload=[f"/api/runs/{run_id}.moetrace?head={HEAD_TOKENS}"])

    @r.get("/r/{run_id}/preview.png")
    def permalink_preview(request: Request, run_id: str):
        ctx.guard.check(request)       # the image shows the run's prompt
        try:
            return Response(ctx.stored.preview_png(run_id), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})
        except RunNotFound:
            return not_found_page(run_id)

    @r.get("/api/auth")
    def api_auth(request: Request) -> dict:
        """Whether this server wants a key, and whether this request carries it (the page asks once)."""
        return {"required": ctx.guard.required, "ok": ctx.guard.accepts(request)}

    @r.get("/api/model")
    def api_model() -> dict:
        lm = getattr(engine, "lm", None)
        return {**ctx.model, "capture": engine.capture.name, "parallel": getattr(engine, "parallel", 1),
                "n_ctx_per_request": getattr(lm, "n_ctx_seq", None),
                # the longest sequence the model was trained on: the page warns a run going past it
                "n_ctx_train": getattr(getattr(engine, "info", None), "n_ctx_train", None) or None}

    @r.get("/api/prompts")
    def api_prompts() -> dict:
        # every prompt, each saying whether it suits this server's model; the page offers those first
        return {"model_kind": kind,
                "prompts": [{**p.to_json(), "suits": suits(p, kind)} for p in ctx.prompts.values()]}

    @r.get("/api/settings")
    def api_settings() -> dict:
        # every run setting (moeviz/settings.py): the page's inputs take their defaults and ranges from it
        return {"settings": settings_table(ctx.settings.run_defaults)}

    @r.get("/api/limits")
    def api_limits() -> dict:
        return {"max_prompt_tokens": settings.max_prompt_tokens, "max_tokens": settings.max_tokens,
                "max_message_bytes": settings.max_message_bytes}

    return r
