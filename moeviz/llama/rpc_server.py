"""`moeviz rpc-server`: llama.cpp's rpc-server (tools/rpc, with moeviz's --mem), built by `make setup` from the
same patched sources as the installed library (patches/build-llama-cpp.sh caches it
beside the wheel) and linked against the same ggml libraries.

llama.cpp's rpc-server exits 0, having printed its banner, when it cannot listen (the port
in use; a host that is not an IPv4 address: "localhost", "::1"). So the address is checked
here first (an IPv4 literal, "localhost" read as 127.0.0.1, and a trial bind), the server
runs as a child, and moeviz says it listens only once the child's socket is listening;
a child that exits before that is a one-line error and a non-zero exit.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import Unavailable, UserError


def cache_dir() -> Path:
    base = os.environ.get("MOEVIZ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moeviz")
    return Path(base)


def rpc_server_path() -> Path:
    """The rpc-server binary: $MOEVIZ_RPC_SERVER, else the one the last `make setup` built."""
    env = os.environ.get("MOEVIZ_RPC_SERVER")
    if env:
        path = Path(env)
    else:
        current = cache_dir() / "rpc-server" / "current"
        try:
            path = Path(current.read_text().strip())
        except OSError:
            raise Unavailable("llama.cpp's rpc-server is not built; run 'make setup'") from None
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise Unavailable(f"llama.cpp's rpc-server is missing at {path}; run 'make setup'")
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
moeviz rpc-server: WARNING: listening on {host}, not on loopback.
  llama.cpp's RPC protocol has NO authentication and NO encryption: anyone who can
  reach {host}:{port} can run computations here and read or write this server's
  memory buffers. Use it only on a private, trusted network (or an SSH tunnel).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


MAX_MEM_MIB = 1 << 40   # 1 EiB: past any machine, below size_t overflow


def parse_mem(mem) -> int | None:
    """--mem: whole MiB, at least 1 (None: no limit)."""
    if mem is None:
        return None
    text = str(mem).strip()
    if isinstance(mem, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_MEM_MIB:
        raise UserError(f"--mem wants a whole number of MiB, at least 1, got {text[:40]!r}")
    return int(text)


def listen_address(host: str) -> str:
    """The IPv4 address llama.cpp's rpc-server can listen on (it takes only IPv4 literals):
    "localhost" is 127.0.0.1; anything else is a one-line error."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise UserError(f"--host wants an IPv4 address such as 127.0.0.1 or 0.0.0.0, got {host[:60]!r}") from None
    if addr.version != 4:
        raise UserError(f"--host {host}: llama.cpp's rpc-server listens on IPv4 only (try 127.0.0.1 or 0.0.0.0)")
    return str(addr)


def check_can_listen(host: str, port: int) -> None:
    """A trial bind as rpc-server binds (SO_REUSEADDR): UserError naming why it cannot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as e:
            why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or type(e).__name__).lower()
            raise UserError(f"cannot listen on {host}:{port}: {why}") from None


def rpc_server_command(*, host: str = "127.0.0.1", port: int = 50052, threads: int | None = None,
                       mem: int | None = None, cache: bool = False) -> list[str]:
    # --mem: moeviz's patches/rpc-server/0030-rpc-server-mem.patch (rpc-server -m/--mem):
    # each device reports at most that much free and total memory to clients (their
    # default split) and refuses buffers beyond it
    mem = parse_mem(mem)
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    if threads is not None and not 1 <= threads <= 512:
        raise UserError(f"--threads must be between 1 and 512, got {threads}")
    if not host or any(c.isspace() for c in host):
        raise UserError(f"--host: bad address {host!r}")
    cmd = [str(rpc_server_path()), "--host", listen_address(host), "--port", str(port)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if mem is not None:
        cmd += ["--mem", str(mem)]
    if cache:
        cmd.append("--cache")
    return cmd


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (Linux: /proc)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        cols = row.split()
        if len(cols) >= 10 and cols[3] == "0A" and int(cols[1].split(":")[1], 16) == port and cols[9] in inodes:
            return True
    return False


START_TIMEOUT_S = 30.0


def run_rpc_server(**kw) -> int:
    cmd = rpc_server_command(**kw)
    host, port = cmd[cmd.index("--host") + 1], int(cmd[cmd.index("--port") + 1])
    check_can_listen(host, port)
    if not is_loopback(host):
        print(WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd)
    # Ctrl-C reaches the child with the terminal's process group; a service manager's TERM
    # is passed on; either way this process ends when the child does, with its status
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _listening(proc.pid, port):
        if proc.poll() is not None:
            raise UserError(f"rpc-server could not listen on {host}:{port} (it exited with status {proc.returncode})")
        if time.monotonic() > deadline or not sys.platform.startswith("linux"):
            break   # no /proc to look at: the trial bind above is the check
        time.sleep(0.05)
    limit = f", at most {parse_mem(kw['mem'])} MiB per device" if kw.get("mem") is not None else ""
    print(f"moeviz: rpc-server on {host}:{port}{limit} (clients: --rpc {host}:{port}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    rc = proc.wait()
    return rc if rc >= 0 else 128 - rc
