"""`serve --api-key`: one guard over everything that shows prompts or output.

Guarded: the HTTP APIs (OpenAI's, Anthropic's, Responses, llama-server's extras), the run
store (`/api/runs/*`, uploads), `/api/live`, the permalink pages and their previews,
`/metrics` and the live websocket. Open, as in llama-server: `/health`, `/v1/models`,
the page itself and its static files, and the page's start-up JSON (model, prompt
library, limits, settings), which hold nothing a client sent.

A key is accepted from `Authorization: Bearer KEY` (OpenAI's clients, llama-server),
`x-api-key: KEY` (Anthropic's) or the `moeviz_api_key` cookie, which the page sets
once the person has typed the key (web/js/apikey.js): a browser sends it with the
permalink page, its preloads and the websocket handshake, none of which can carry a
header. The cookie is SameSite=Strict, so another site cannot make a browser send it.
Every comparison is constant-time (hmac.compare_digest).
"""
from __future__ import annotations

import hmac
import urllib.parse

from fastapi import Request

from .openai_shapes import ApiKeyError

COOKIE = "moeviz_api_key"
MESSAGE = "Invalid API Key"          # llama.cpp's server's words


class KeyGuard:
    def __init__(self, key: str | None):
        self._key = key.strip().encode("utf-8") if key is not None else None

    @property
    def required(self) -> bool:
        return self._key is not None

    def accepts(self, conn) -> bool:
        """Whether an HTTP request or websocket handshake (a Starlette HTTPConnection)
        carries the key. Every candidate is compared, none skipped early by its value."""
        if self._key is None:
            return True
        ok = False
        for candidate in self._candidates(conn):
            ok |= hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), self._key)
        return ok

    def check(self, conn) -> None:
        """ApiKeyError (401) unless the request carries the key."""
        if not self.accepts(conn):
            raise ApiKeyError(MESSAGE)

    def dependency(self):
        """A FastAPI dependency that checks the key (a router's or a route's `dependencies`)."""
        def require_key(request: Request) -> None:
            self.check(request)
        return require_key

    @staticmethod
    def _candidates(conn) -> list[str]:
        headers = conn.headers
        found = []
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            found.append(value.strip())
        if "x-api-key" in headers:
            found.append(headers["x-api-key"].strip())
        cookie = conn.cookies.get(COOKIE)
        if cookie is not None:
            found.append(urllib.parse.unquote(cookie).strip())
        return found
