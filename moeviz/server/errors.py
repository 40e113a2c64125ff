"""The app's one translation of errors into what a client sees.

A MoevizError becomes its one line with its HTTP status. A file-system error (a full or
read-only data directory) becomes its reason without the server's path. Anything else
is a bug: logged here with its traceback, and the client gets a generic line.
"""
from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from ..errors import MoevizError

log = logging.getLogger("moeviz.server")


def client_message(e: BaseException) -> str:
    if isinstance(e, MoevizError):
        return e.one_line()
    if isinstance(e, OSError) and e.errno is not None:
        return f"the server could not do this: {e.strerror}"   # never the server's paths
    log.error("internal error", exc_info=e)
    return f"internal error ({type(e).__name__}); the server's log has the details"


def client_status(e: BaseException) -> int:
    return e.status if isinstance(e, MoevizError) else 500


def error_response(e: BaseException) -> JSONResponse:
    return JSONResponse({"error": client_message(e)}, status_code=client_status(e))


def translating_route(respond) -> type:
    """An APIRoute class whose handlers' errors all become `respond(e)`: each API surface
    (OpenAI's, Anthropic's) answers every error once, in its own error shape."""
    from fastapi.routing import APIRoute  # noqa: PLC0415

    class Route(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def route(request):
                try:
                    return await handler(request)
                except Exception as e:  # noqa: BLE001 - translated here, once (a bug is logged by client_message)
                    return respond(e)

            return route

    return Route


def install(app) -> None:
    """Every HTTP route's errors, in one handler."""
    app.add_exception_handler(MoevizError, lambda _request, exc: error_response(exc))
    app.add_exception_handler(OSError, lambda _request, exc: error_response(exc))
