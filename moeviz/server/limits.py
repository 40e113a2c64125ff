"""Request limits: body size (refused before the body is read in full), the time a
public server waits for a body, and a per-client rate limit for public mode."""
from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import functools
import threading
import time

from ..errors import TooLarge
from .requests import RequestError


class UploadTooLarge(TooLarge, ValueError):
    pass


class RateLimited(RequestError):
    status = 429              # OpenAI's rate_limit_error; the page's websocket gets the same line


class BodyTimeout(RequestError):
    status = 408


def _body_timeout(request) -> float | None:
    # a --public server's ConnectionLimits.body_timeout_s (app.state.settings); None elsewhere
    settings = getattr(getattr(getattr(request, "app", None), "state", None), "settings", None)
    if settings is None or not getattr(settings, "public", False):
        return None
    return settings.limits.body_timeout_s


async def read_limited(request, limit: int) -> bytes:
    """The request's body, at most `limit` bytes. On a --public server the whole body must
    arrive within its body timeout: 64 connections that sent a head and part of a body held
    their slots for 40 s+ (and that address then got 429s). The 408 closes the connection
    (its body is unread)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"upload is {int(declared)} bytes; the limit is {limit}")
    timeout = _body_timeout(request)
    if timeout is None:
        return await _read_body(request, limit)
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None


async def _read_body(request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(f"upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class RateLimiter:
    """At most `per_minute` generations per client address in any sliding minute."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._hits: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._swept > 60:    # forget addresses quiet for a minute: memory stays bounded
                for key in [k for k, h in self._hits.items() if not h or now - h[-1] > 60]:
                    del self._hits[key]
                self._swept = now
            hits = self._hits[client]
            while hits and now - hits[0] > 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                wait = 60 - (now - hits[0])
                raise RateLimited(f"rate limit: {self.per_minute} generations a minute; try again in {wait:.0f} s")
            hits.append(now)

    @property
    def addresses(self) -> int:
        return len(self._hits)


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to hand back this way
        return None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc's malloc_trim). glibc keeps what a
    run or an upload freed in its arenas (one per thread that allocates), so a server's RSS
    would ratchet up with each client's high-water mark."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
