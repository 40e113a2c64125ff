"""Connection limits of a public server (docs/public-mode.md): per client address, how
many connections and websockets it may hold, and how long an idle one stays open.

Two levels, because a reverse proxy changes who the peer is:

- TCP (`limited_protocols`, uvicorn's HTTP and websocket protocol classes): at most
  `connections_per_address` open connections per peer address, and a connection must
  send a complete request head within `header_timeout_s` (uvicorn closes idle keep-alive
  connections itself after `keep_alive_s`, but has no limit before the first request: a
  half-open connection would be held for ever). A trusted proxy (`--forwarded-allow-ips`)
  is not capped here: it carries every client.
- the app (`WebsocketLimits`, in the `/ws` handler): at most `websockets_per_address`
  websockets per client address (the forwarded one behind a trusted proxy), and a
  websocket with no run of its own that sends nothing for `websocket_idle_s` is closed.

Refusals are answered, never silent: an HTTP 429 with a one-line JSON error, or a
websocket close frame with code 1008 and the reason.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import json
import logging
import threading

from ..errors import UserError

# Websocket close codes: policy violation (too many from one address), and a normal
# close (idle for too long); both carry a reason the page shows.
CLOSE_TOO_MANY = 1008
CLOSE_IDLE = 1000


@dataclasses.dataclass
class ConnectionLimits:
    connections_per_address: int = 64     # open TCP connections per peer address (HTTP and websockets)
    websockets_per_address: int = 16      # open websockets per client address
    header_timeout_s: float = 10.0        # to send a whole request head after connecting
    keep_alive_s: int = 5                 # an idle keep-alive HTTP connection (uvicorn's timeout_keep_alive)
    websocket_idle_s: float = 300.0       # a websocket with no run that sends nothing
    body_timeout_s: float = 30.0          # to send a whole request body once its head is in (limits.read_limited)


class ForwardedIpsError(UserError, ValueError):
    """A bad `--forwarded-allow-ips` entry."""


def trusted_networks(spec: str | None) -> list:
    """`--forwarded-allow-ips`: comma-separated addresses or networks ("*": any)."""
    out = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part == "*":
            return ["*"]
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ForwardedIpsError(f"--forwarded-allow-ips: {part[:60]!r} is not an IP address or network") from None
    return out


def is_trusted(host: str | None, networks: list) -> bool:
    if not networks or host is None:
        return False
    if networks == ["*"]:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in n for n in networks)


class _Registry:
    """Open TCP connections by transport and peer address (shared by the HTTP protocol
    and the websocket protocol a connection is upgraded to)."""

    def __init__(self, per_address: int, trusted: list):
        self.per_address = per_address
        self.trusted = trusted
        self._peer: dict[int, str] = {}
        self.counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def open(self, transport) -> bool:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, (tuple, list)) and peer else "?"
        with self._lock:
            if id(transport) in self._peer:
                return True
            if not is_trusted(host, self.trusted) and self.counts[host] >= self.per_address:
                return False
            self._peer[id(transport)] = host
            self.counts[host] += 1
            return True

    def close(self, transport) -> None:
        with self._lock:
            host = self._peer.pop(id(transport), None)
            if host is not None:
                self.counts[host] -= 1
                if self.counts[host] <= 0:
                    del self.counts[host]

    @property
    def open_connections(self) -> int:
        return sum(self.counts.values())


def _too_many_response(limit: int) -> bytes:
    body = json.dumps({"error": f"too many connections from your address (the limit is {limit})"}).encode()
    return (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"retry-after: 5\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def limited_protocols(limits: ConnectionLimits, trusted: list):
    """(http, ws) protocol classes for uvicorn.Config(http=..., ws=...) enforcing `limits`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol  # noqa: PLC0415

    registry = _Registry(limits.connections_per_address, trusted)

    class LimitedHTTP(H11Protocol):
        _head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if not registry.open(transport):
                transport.write(_too_many_response(registry.per_address))
                transport.close()
                return
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            self._head_timer = None
            # no request head yet (a keep-alive connection has had one: uvicorn times it out)
            if self.cycle is None and not self.transport.is_closing() and self.transport.get_protocol() is self:
                self.transport.close()

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def handle_websocket_upgrade(self, event) -> None:
            self._stop_head_timer()
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc) -> None:
            self._stop_head_timer()
            registry.close(self.transport)
            super().connection_lost(exc)

    class LimitedWebSocket(WebSocketsSansIOProtocol):
        def connection_made(self, transport) -> None:
            registry.open(transport)        # the upgraded connection: counted already
            super().connection_made(transport)

        def connection_lost(self, exc) -> None:
            registry.close(self.transport)
            super().connection_lost(exc)

    LimitedHTTP.registry = LimitedWebSocket.registry = registry
    return LimitedHTTP, LimitedWebSocket


class WebsocketLimits:
    """Per client address: open websockets, and the idle timeout (the /ws handler's)."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.counts: collections.Counter = collections.Counter()

    def admit(self, host: str) -> str | None:
        """None when the address may open one more websocket, else the reason it may not."""
        if self.counts[host] >= self.limits.websockets_per_address:
            return f"too many connections from your address (the limit is {self.limits.websockets_per_address})"
        self.counts[host] += 1
        return None

    def release(self, host: str) -> None:
        self.counts[host] -= 1
        if self.counts[host] <= 0:
            del self.counts[host]

    async def receive(self, ws, idle: bool):
        """The next websocket event; None when an `idle` connection sent nothing in time."""
        if not idle:
            return await ws.receive()
        try:
            return await asyncio.wait_for(ws.receive(), self.limits.websocket_idle_s)
        except asyncio.TimeoutError:
            return None

    def idle_reason(self) -> str:
        return f"idle for {self.limits.websocket_idle_s:g} s"


SHUTDOWN_GRACE_S = 3.0   # after SIGTERM / Ctrl-C: how long open responses may take to finish


class _ShutdownCancellations(logging.Filter):
    """uvicorn logs each response it cancels at the end of the graceful shutdown as an
    "Exception in ASGI application" with a traceback: that cancellation is the design."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) and "graceful shutdown" in str(exc))


_SHUTDOWN_FILTER = _ShutdownCancellations()


def uvicorn_options(settings, forwarded_allow_ips: str | None = None) -> dict:
    """uvicorn.Config keywords for a moeviz server: proxy headers (X-Forwarded-For/-Proto)
    believed only from the `forwarded_allow_ips` addresses (none by default: uvicorn
    itself would trust 127.0.0.1, so any client of a same-host proxy could name its own
    address), and in public mode the connection limits of `settings.limits`."""
    trusted = trusted_networks(forwarded_allow_ips)
    logging.getLogger("uvicorn.error").addFilter(_SHUTDOWN_FILTER)   # once: a set
    opts = {"proxy_headers": bool(trusted), "forwarded_allow_ips": forwarded_allow_ips or "",
            # a bounded graceful shutdown: uvicorn waits for open responses, and a streaming
            # client that stopped reading kept SIGTERM from ending the server (30 s+); after
            # this it cancels them (their runs are cancelled as for a client that leaves)
            "timeout_graceful_shutdown": SHUTDOWN_GRACE_S}
    if settings.public:
        http, ws = limited_protocols(settings.limits, trusted)
        opts.update(http=http, ws=ws, timeout_keep_alive=settings.limits.keep_alive_s)
    return opts
