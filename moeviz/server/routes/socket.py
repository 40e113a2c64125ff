"""The live websocket `/ws`: the transport around protocol.LiveSession. It admits the
connection (public mode's per-address limit), sends the model first, queues every
outgoing message for one sender task (the worker's messages arrive from its thread),
and closes an idle connection in public mode."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, WebSocket

from ...trace.messages import model_message
from ..auth import MESSAGE
from ..connections import CLOSE_IDLE, CLOSE_TOO_MANY
from ..context import ServerContext
from ..protocol import LiveSession
from ..worker import dumps


CLOSE_POLICY = 1008          # RFC 6455 policy violation: no (or a wrong) API key


def router(ctx: ServerContext) -> APIRouter:
    r = APIRouter()
    settings, sockets = ctx.settings, ctx.sockets

    @r.websocket("/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        if not ctx.guard.accepts(ws):     # `serve --api-key`: runs, the live list and watching show prompts
            await ws.close(code=CLOSE_POLICY, reason=MESSAGE)
            return
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
                    ctx.token_latency.append((t_event, t_queued, t_dequeued, time.perf_counter()))

        send_task = asyncio.create_task(sender())
        out.put_nowait((dumps(model_message(ctx.model)), 0.0, 0.0))
        session = LiveSession(worker=ctx.worker, live_runs=ctx.live_runs, prompts=ctx.prompts,
                              max_tokens=settings.max_tokens, max_message_bytes=settings.max_message_bytes,
                              send=send_threadsafe, limiter=ctx.limiter, client=host,
                              run_defaults=settings.run_defaults)
        try:
            while True:
                if sockets is None:
                    event = await ws.receive()
                else:   # public mode: a connection with nothing running may not sit idle
                    event = await sockets.receive(ws, session.idle)
                    if event is None:
                        await ws.close(code=CLOSE_IDLE, reason=sockets.idle_reason())
                        break
                if event["type"] == "websocket.disconnect":
                    break
                session.handle(event.get("text") if event.get("text") is not None else event.get("bytes", b""))
        finally:
            if sockets is not None:
                sockets.release(host)
            session.close()
            send_task.cancel()

    return r
