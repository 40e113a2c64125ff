"""The server while its model loads: listening at once, answering with the load's progress.

`LoadingApp` is an ASGI app that `moeviz serve` runs instead of the FastAPI app. At
lifespan startup it builds the real app in a thread (`build(progress)`: the engine, then
`create_app`), and until that is done it answers by itself:

- `GET /health`: 503 `{"status": "loading", "progress": 0.42, "model": "<file name>"}`,
  or after a failed load 503 `{"status": "error", "error": "<one line>"}`;
- a page request (`/`, `/r/<id>`, or anything a browser asks as text/html): 503 with a small
  page (web/loading.html) that polls /health, shows "loading model n%", and reloads
  into the real page once the model is ready (or shows the load's error);
- any other HTTP request: 503 `{"error": "the model is still loading (42%)"}` (or the error);
- a websocket: refused with that same 503 JSON response (close code 1013 where the server
  cannot send a response to a websocket handshake).

Once the real app's lifespan has started, every request goes to it (its /health says
`{"status": "ok", ...}` with HTTP 200). At shutdown the real app's lifespan is shut down
(the generation worker stops) and `close` (the engine's) runs; a shutdown during the load
stops llama.cpp's load at its next progress report (the progress callback returns False).

A failed load is reported once through `on_failed(message, exc)`, then the server keeps
answering with the error for `linger_s` seconds, so that an open page can show it, and
calls `on_exit()` (`moeviz serve` then stops uvicorn and exits with status 1).
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable

from starlette.responses import HTMLResponse, JSONResponse

from ..errors import one_line
from ..page import render_template

LINGER_S = 5.0   # how long a failed load's error stays on show before the server exits

# build(progress) -> (the real ASGI app, close): runs in a thread; progress(fraction) returns
# False once the load should stop.
Build = Callable[[Callable[[float], bool]], tuple]


class LoadingApp:
    def __init__(self, build: Build, *, web_dir: Path | None = None, model_name: str = "", linger_s: float = LINGER_S,
                 on_progress: Callable[[float], object] | None = None, on_ready: Callable[[], object] | None = None,
                 on_failed: Callable[[str, BaseException], object] | None = None,
                 on_exit: Callable[[], object] | None = None):
        self.build = build
        self.model_name = model_name
        self.linger_s = linger_s
        self.on_progress, self.on_ready, self.on_failed, self.on_exit = on_progress, on_ready, on_failed, on_exit
        self.state = "loading"            # then "ready" or "error"
        self.progress = 0.0
        self.error: str | None = None
        self.app = None                   # the real app, once its lifespan has started
        self._close: Callable[[], object] | None = None
        self._stopping = False
        self._load_task: asyncio.Task | None = None
        self._linger_task: asyncio.Task | None = None
        self._inner: _Lifespan | None = None
        self.web_dir = web_dir

    # ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self.app
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            await self._answer_http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._refuse_websocket(scope, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._load_task is None:
                    self._load_task = asyncio.create_task(self._load())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # While loading ----------------------------------------------------------------------
    def health(self) -> dict:
        if self.state == "error":
            return {"status": "error", "error": self.error}
        return {"status": "loading", "progress": round(self.progress, 4), "model": self.model_name}

    def _unavailable(self) -> str:
        if self.state == "error":
            return self.error or "the model failed to load"
        return f"the model is still loading ({int(100 * self.progress)}%)"

    async def _answer_http(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        headers = {"Cache-Control": "no-store", "Retry-After": "1"}
        if path == "/health":
            response = JSONResponse(self.health(), status_code=503, headers=headers)
        elif _wants_page(scope):
            html = render_template("loading.html", self.web_dir, error=self.error if self.state == "error" else None,
                                   percent=int(100 * self.progress), model=self.model_name)
            response = HTMLResponse(html, status_code=503, headers=headers)
        else:
            response = JSONResponse({"error": self._unavailable()}, status_code=503, headers=headers)
        await response(scope, receive, send)

    async def _refuse_websocket(self, scope, send) -> None:
        text = self._unavailable()
        if "websocket.http.response" in scope.get("extensions", {}):
            body = JSONResponse({"error": text}).body
            await send({"type": "websocket.http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # 1013: try again later (the reason is limited to 123 bytes)
            await send({"type": "websocket.close", "code": 1013, "reason": text.encode()[:123].decode(errors="ignore")})

    # The load ---------------------------------------------------------------------------
    def _report(self, fraction: float) -> bool:
        """llama.cpp's progress, on the load thread; False stops the load."""
        self.progress = max(self.progress, fraction)
        if self.on_progress is not None:
            self.on_progress(self.progress)
        return not self._stopping

    async def _load(self) -> None:
        try:
            app, close = await asyncio.to_thread(self.build, self._report)
        except BaseException as e:  # noqa: BLE001 - reported, not raised: the server stays up to show it
            if not self._stopping:
                self._fail(e)
            return
        if self._stopping:
            close()
            return
        inner = _Lifespan(app)
        try:
            await inner.startup()
        except Exception as e:  # noqa: BLE001
            close()
            self._fail(e)
            return
        self._inner, self._close = inner, close
        self.progress = 1.0
        self.app = app
        self.state = "ready"
        if self.on_ready is not None:
            self.on_ready()

    def _fail(self, e: BaseException) -> None:
        message = one_line(e) or " ".join(f"{type(e).__name__}: {e}".split())
        self.state, self.error = "error", message
        if self.on_failed is not None:
            self.on_failed(message, e)
        self._linger_task = asyncio.create_task(self._exit_later())

    async def _exit_later(self) -> None:
        await asyncio.sleep(self.linger_s)
        if self.on_exit is not None:
            self.on_exit()

    async def shutdown(self) -> None:
        """Stop the load (at llama.cpp's next progress report) or the real app, then close."""
        self._stopping = True
        if self._linger_task is not None:
            self._linger_task.cancel()
        if self._load_task is not None:
            await self._load_task
        if self._inner is not None:
            inner, self._inner = self._inner, None
            await inner.shutdown()
        if self._close is not None:
            close, self._close = self._close, None
            close()


def _wants_page(scope) -> bool:
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    path = scope.get("path", "")
    if path.startswith(("/api/", "/static/")):
        return False
    if path == "/" or path.startswith("/r/"):
        return True
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/html" in accept


class _Lifespan:
    """Drives an ASGI app's lifespan protocol (startup now, shutdown later)."""

    def __init__(self, app):
        self.app = app
        self._to_app: asyncio.Queue = asyncio.Queue()
        self._from_app: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def _exchange(self, kind: str) -> None:
        await self._to_app.put({"type": f"lifespan.{kind}"})
        answer = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if answer not in done:   # the app returned (or raised) without answering
            answer.cancel()
            self._task.result()
            return
        message = answer.result()
        if message["type"] == f"lifespan.{kind}.failed":
            raise RuntimeError(message.get("message") or f"the app's {kind} failed")

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._exchange("shutdown")
        await self._task


def engine_app(make_engine: Callable, settings, *, model_path: str | os.PathLike, **kw) -> LoadingApp:
    """`moeviz serve`'s app: `make_engine(progress)` (an Engine), then `create_app` over it."""
    from .app import ServerSettings, create_app  # noqa: PLC0415

    settings = settings or ServerSettings()

    def build(progress):
        engine = make_engine(progress)
        try:
            return create_app(engine, settings), engine.close
        except BaseException:
            engine.close()
            raise

    return LoadingApp(build, web_dir=settings.web_dir, model_name=Path(model_path).name, **kw)
