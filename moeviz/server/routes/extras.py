"""llama-server's own endpoints beside the OpenAI API, in its shapes
(tools/server/server-context.cpp): `POST /tokenize` (`{"content"}` -> `{"tokens"}`,
`with_pieces` too), `POST /detokenize` (`{"tokens"}` -> `{"content"}`), `POST
/apply-template` (chat messages -> `{"prompt"}`, the text the model would read),
`GET /props` (`default_generation_settings.n_ctx` per slot, `total_slots`, the chat
template, BOS/EOS) and `GET /slots` (one entry per `--parallel` slot). Guarded by
`--api-key` as llama-server guards them. Errors are OpenAI's error object."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from ... import __version__
from ...engine.toolcalls import render_prompt
from ...engine.text import PromptError
from ...settings import to_json as settings_table
from ..context import ServerContext
from ..openai_shapes import ApiRequestError, parse_request
from .openai import OpenAIRoute, read_body, served_model_id

MAX_TOKENS_IN = 1 << 20          # token ids one /detokenize may send


def _flag(body: dict, name: str, default: bool) -> bool:
    v = body.get(name, default)
    if not isinstance(v, bool):
        raise ApiRequestError(f"'{name}' must be true or false", name)
    return v


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ApiRequestError("the request body must be a JSON object")
    return body


def piece_json(piece: bytes):
    """llama-server's `with_pieces`: the piece as text when it is valid UTF-8, else its bytes."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def router(ctx: ServerContext) -> APIRouter:
    settings, engine = ctx.settings, ctx.engine
    r = APIRouter(route_class=OpenAIRoute, dependencies=[Depends(ctx.guard.dependency())])
    lm = engine.lm

    async def body_of(request: Request) -> dict:
        return _object(await read_body(request, settings.api.max_body_bytes))

    @r.post("/tokenize")
    async def tokenize(request: Request):
        body = await body_of(request)
        content = body.get("content", "")
        if not isinstance(content, str):
            raise ApiRequestError("'content' must be a string", "content")
        add_special, parse_special = _flag(body, "add_special", False), _flag(body, "parse_special", True)
        with_pieces = _flag(body, "with_pieces", False)

        def work():
            tokens = lm.tokenize(content, add_special=add_special, parse_special=parse_special) if content else []
            if with_pieces:
                return [{"id": t, "piece": piece_json(lm.piece(t))} for t in tokens]
            return tokens
        return {"tokens": await run_in_threadpool(work)}

    @r.post("/detokenize")
    async def detokenize(request: Request):
        body = await body_of(request)
        tokens = body.get("tokens", [])
        if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS_IN or \
                not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise ApiRequestError(f"'tokens' must be a list of at most {MAX_TOKENS_IN} integer token ids", "tokens")
        bad = next((t for t in tokens if not 0 <= t < lm.n_vocab), None)
        if bad is not None:       # checked here: llama.cpp reads its tables at any id it is given
            raise ApiRequestError(f"token id {bad} is outside the vocabulary (0-{lm.n_vocab - 1})", "tokens")

        def work():
            return b"".join(lm.piece(t) for t in tokens).decode("utf-8", "replace")
        return {"content": await run_in_threadpool(work)}

    @r.post("/apply-template")
    async def apply_template(request: Request):
        req = parse_request(await body_of(request), chat=True, max_tokens_cap=None)
        template = engine.info.chat_template
        if not template:
            raise PromptError("this model has no chat template")
        bos, eos = lm.bos_eos_text()
        return {"prompt": await run_in_threadpool(render_prompt, template, req.prompt, bos, eos)}

    @r.get("/props")
    def props():
        bos, eos = lm.bos_eos_text()
        return {
            "default_generation_settings": {"n_ctx": lm.n_ctx_seq, "params": {
                s["name"]: s["default"] for s in settings_table() if "name" in s and "default" in s}},
            "total_slots": getattr(engine, "parallel", 1), "model_alias": served_model_id(ctx),
            "model_path": engine.info.path, "modalities": {"vision": False, "video": False, "audio": False},
            "endpoint_slots": True, "endpoint_props": False, "endpoint_metrics": settings.metrics,
            "chat_template": engine.info.chat_template or "", "bos_token": bos, "eos_token": eos,
            "build_info": f"moeviz {__version__}", "is_sleeping": False,
        }

    @r.get("/slots")
    def slots():
        running = [e for e in reversed(ctx.live_runs.listing()) if e["status"] == "running"]
        out = []
        for i in range(getattr(engine, "parallel", 1)):
            run = running[i] if i < len(running) else None
            out.append({"id": i, "id_task": run["run"] if run else -1, "n_ctx": lm.n_ctx_seq, "speculative": False,
                        "is_processing": run is not None,
                        "moeviz": {"run": run["run"], "source": run["source"]} if run else None})
        return out

    return r
