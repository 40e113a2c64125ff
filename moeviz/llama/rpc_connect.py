"""Addresses of rpc-servers (`--rpc HOST:PORT,...`, `--tensor-split`) and moeviz's own
check of one before ggml-rpc connects: a connection and the protocol's HELLO, bounded in
time, so an address that is wrong, closed or not an rpc-server is a one-line error.

How long ggml-rpc itself waits (moeviz's patches/0050-rpc-timeouts.patch): a connection
and its HELLO at most CONNECT_TIMEOUT_S, any later command (its bytes out, its answer
back, a remote graph computation included) at most `command_timeout_s()`:
$MOEVIZ_RPC_TIMEOUT seconds, default 60. A server that stops answering longer is lost.
"""
from __future__ import annotations

import os
import re
import socket
import struct

from ..errors import UserError

# ggml/include/ggml-rpc.h and ggml/src/ggml-rpc/ggml-rpc.cpp of the vendored llama.cpp
RPC_PROTO_MAJOR, RPC_PROTO_MINOR = 7, 0
RPC_CMD_HELLO = 14
RPC_CONN_CAPS_SIZE = 24
MAX_SERVERS = 16   # GGML_RPC_MAX_SERVERS
DEFAULT_PORT = 50052
PROBE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 24 * 3600.0


class RpcError(UserError, ValueError):
    """A bad --rpc list, or a server that cannot be reached / is not a compatible rpc-server."""


def command_timeout_s() -> float:
    """$MOEVIZ_RPC_TIMEOUT (seconds, > 0), else COMMAND_TIMEOUT_S."""
    raw = os.environ.get("MOEVIZ_RPC_TIMEOUT", "").strip()
    if not raw:
        return COMMAND_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:
        raise RpcError(f"MOEVIZ_RPC_TIMEOUT wants seconds between 0 and {MAX_TIMEOUT_S:g}, got {raw[:40]!r}")
    return value


def parse_servers(spec) -> list[str]:
    """`HOST:PORT[,HOST:PORT...]` (or a list of them) as endpoints, checked."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    out = []
    for raw in items:
        item = str(raw).strip()
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise RpcError(f"--rpc wants HOST:PORT[,HOST:PORT...], got {item[:80]!r}")
        if ":" in host or host.startswith("["):
            raise RpcError(f"--rpc: IPv6 addresses are not supported by llama.cpp's RPC client, got {item[:80]!r}")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            raise RpcError(f"--rpc: bad host name {host[:60]!r}")
        ep = f"{host}:{int(port)}"
        if ep in out:
            raise RpcError(f"--rpc names {ep} twice")
        out.append(ep)
    if not out:
        raise RpcError("--rpc names no servers")
    if len(out) > MAX_SERVERS:
        raise RpcError(f"--rpc names {len(out)} servers; llama.cpp takes at most {MAX_SERVERS}")
    return out


def parse_tensor_split(spec) -> list[float] | None:
    if spec is None or spec == "":
        return None
    items = spec if isinstance(spec, (list, tuple)) else str(spec).replace("/", ",").split(",")
    try:
        out = [float(x) for x in items]
    except ValueError:
        raise RpcError(f"--tensor-split wants proportions like 3,1, got {str(spec)[:60]!r}") from None
    if any(not (x >= 0) or x == float("inf") for x in out) or not sum(out) > 0:
        raise RpcError("--tensor-split wants non-negative proportions, not all zero")
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[int, int, int]:
    """Connect and say HELLO as ggml-rpc does; the server's protocol version, or RpcError."""
    host, _, port = endpoint.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except socket.gaierror as e:
        raise RpcError(f"--rpc {endpoint}: unknown host ({e.strerror})") from None
    except OSError as e:
        why = "connection refused" if isinstance(e, ConnectionRefusedError) else (
            "no answer" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__))
        raise RpcError(f"--rpc {endpoint}: cannot reach an rpc-server there ({why}); start one with "
                       f"'moeviz rpc-server --port {port}'") from None
    try:
        with sock:
            sock.sendall(struct.pack("<BQ", RPC_CMD_HELLO, RPC_CONN_CAPS_SIZE) + bytes(RPC_CONN_CAPS_SIZE))
            size = struct.unpack("<Q", _recv_exact(sock, 8))[0]
            if size != 4 + RPC_CONN_CAPS_SIZE:
                raise ConnectionError(f"unexpected HELLO answer of {size} bytes")
            major, minor, patch = _recv_exact(sock, size)[:3]
    except TimeoutError:
        raise RpcError(f"--rpc {endpoint}: the server accepted but did not answer within {timeout:g} s "
                       "(serving another client? an rpc-server serves one at a time)") from None
    except (OSError, ConnectionError) as e:
        raise RpcError(f"--rpc {endpoint}: not an rpc-server of llama.cpp's protocol ({e})") from None
    if major != RPC_PROTO_MAJOR or minor > RPC_PROTO_MINOR:
        raise RpcError(f"--rpc {endpoint}: rpc-server speaks protocol {major}.{minor}.{patch}, this build "
                       f"{RPC_PROTO_MAJOR}.{RPC_PROTO_MINOR}.x (build both from the same llama.cpp)")
    return major, minor, patch
