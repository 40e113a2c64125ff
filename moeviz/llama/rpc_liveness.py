"""Whether the rpc-servers holding a model's layers are still there.

Three ways a server is seen to be gone: ggml-rpc (moeviz's patches 0020 and 0050) marks
it lost when a command to it fails or gets no answer within the command timeout
(`lost_servers`; the reason is in llama.cpp's log); the connection llama.cpp holds was
closed by the server's end (`connection_states`, Linux: /proc/net/tcp), seen before a
decode; or, in a build without the patches, ggml-rpc aborts, and the abort guard parks
that thread instead (`lost_message`).
"""
from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import socket
import sys
import threading

from ..errors import RunFailed
from . import abort
from .log import llama_log
from .rpc_ggml import proc


class RpcServerLost(RunFailed, RuntimeError):
    """An rpc-server holding model layers went away (`endpoint`: the one ggml-rpc lost
    during a computation, when known)."""

    def __init__(self, message: str, endpoint: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint


# --- stock ggml-rpc: its aborts on a lost server, survived ---------------------------------
_lost: list[str] = []   # ggml-rpc's abort messages for a server lost during a command
RPC_ABORTS = ("Remote RPC server crashed", "Failed to connect to", "RPC handshake failed")


def _on_rpc_abort(text: str) -> None:
    # the thread that met the dead server (ggml-rpc's dispatcher, or the decoding one) is
    # parked by abort.py once this returns; the process, and every other thread, live on
    _lost.append(text)
    sys.stderr.write(f"moeviz: an rpc-server was lost during a computation ({text.split(': ', 1)[-1]}); "
                     "this model cannot run any more: restart the servers and moeviz\n")
    sys.stderr.flush()


_guard_lock = threading.Lock()
_guarded = []


def install_abort_guard() -> None:
    """Keep the process alive when (stock) ggml-rpc would abort it for a lost server."""
    with _guard_lock:
        if not _guarded:
            abort.park_on(RPC_ABORTS, _on_rpc_abort)
            _guarded.append(True)


def lost_message() -> str | None:
    return _lost[0] if _lost else None


# --- moeviz's ggml-rpc: servers marked lost ------------------------------------------------
_SERVER_LOST = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p)


def soft_failure() -> bool:
    """Whether this build's ggml-rpc fails softly on a lost server (moeviz's 0020 patch)."""
    return proc("ggml_backend_rpc_server_lost", _SERVER_LOST) is not None


def lost_servers(endpoints: list[str]) -> list[str]:
    """The endpoints ggml-rpc has marked lost (a send or receive to them failed or timed
    out); [] with a build that has no such mark (stock ggml-rpc aborts instead)."""
    fn = proc("ggml_backend_rpc_server_lost", _SERVER_LOST)
    if fn is None or not endpoints:
        return []
    return [ep for ep in endpoints if fn(ep.encode())]


_WENT_AWAY = re.compile(r"RPC server (\S+) went away \((.*)\); its operations fail")


def lost_reason(endpoint: str) -> str | None:
    """Why ggml-rpc marked `endpoint` lost, from its log line ("no answer within 60 s,
    frozen or overloaded", "connection lost or malformed response", ...)."""
    for _, line in reversed(llama_log().since(0)):   # a snapshot under the log's lock
        m = _WENT_AWAY.search(line)
        if m and m.group(1) == endpoint:
            return m.group(2)
    return None


def lost_line(endpoint: str, earlier: bool = False) -> str:
    when = "an earlier" if earlier else "the"
    reason = lost_reason(endpoint) or ""
    if reason.startswith("no answer"):
        return f"rpc server {endpoint} stopped answering during {when} run ({reason}); restart it and moeviz"
    return f"rpc server {endpoint} went away during {when} run; restart it and moeviz"


# --- the connections llama.cpp holds (Linux) ------------------------------------------------
def _socket_inodes() -> set[str]:
    out = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out


def _resolve(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    try:
        addr = socket.gethostbyname(host)
    except OSError:
        addr = host
    return addr, int(port)


def connection_states(endpoints: list[str]) -> dict[str, list[str]]:
    """The TCP states ("01" established, "08" closed by the server...) of this process's
    connections to each endpoint; {} where it has none, or off Linux (no /proc/net/tcp)."""
    if not sys.platform.startswith("linux") or not endpoints:
        return {}
    try:
        with open("/proc/self/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return {}
    mine = _socket_inodes()
    by_remote: dict[tuple[str, int], list[str]] = {}
    for row in rows:
        cols = row.split()
        if len(cols) < 10 or cols[9] not in mine:
            continue
        addr_hex, port_hex = cols[2].split(":")
        addr = str(ipaddress.IPv4Address(int(addr_hex, 16).to_bytes(4, "little")))
        by_remote.setdefault((addr, int(port_hex, 16)), []).append(cols[3])
    return {ep: by_remote[_resolve(ep)] for ep in endpoints if _resolve(ep) in by_remote}


def check_alive(endpoints: list[str]) -> None:
    """RpcServerLost when a server is gone: marked lost by ggml-rpc (a failed or unanswered
    command), or its connection (held while a model has buffers there) closed by the
    server's end. The connection check is Linux only (/proc/net/tcp); elsewhere only
    losses met during a computation are seen."""
    if _lost:
        raise RpcServerLost(f"an rpc-server was lost during a computation ({_lost[0].split(': ', 1)[-1]}); "
                            "restart the servers and moeviz")
    lost = lost_servers(endpoints)
    if lost:
        raise RpcServerLost(lost_line(lost[0]), endpoint=lost[0])
    if not sys.platform.startswith("linux"):
        return
    states = connection_states(endpoints)
    for ep in endpoints:
        st = states.get(ep)
        if st is None:
            raise RpcServerLost(f"the connection to the rpc-server at {ep} is gone (it exited or was stopped); "
                                "restart it and moeviz")
        if "01" not in st:
            raise RpcServerLost(f"the rpc-server at {ep} closed its connection (it exited or was stopped); "
                                "restart it and moeviz")
