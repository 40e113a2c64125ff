"""`moeviz rpc-server`: llama.cpp's rpc-server (tools/rpc, with moeviz's --mem), built by `make setup` from the
same patched sources as the installed library (patches/build-llama-cpp.sh caches it
beside the wheel) and linked against the same ggml libraries."""
from __future__ import annotations

import ipaddress
import os
import sys
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
    cmd = [str(rpc_server_path()), "--host", host, "--port", str(port)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if mem is not None:
        cmd += ["--mem", str(mem)]
    if cache:
        cmd.append("--cache")
    return cmd


def run_rpc_server(**kw) -> int:
    cmd = rpc_server_command(**kw)
    host, port = kw.get("host", "127.0.0.1"), kw.get("port", 50052)
    if not is_loopback(host):
        print(WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
    limit = f", at most {parse_mem(kw['mem'])} MiB per device" if kw.get("mem") is not None else ""
    print(f"moeviz: rpc-server on {host}:{port}{limit} (clients: --rpc {host}:{port}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    # replaced by rpc-server itself: signals (Ctrl-C, a service manager's TERM) reach it
    os.execv(cmd[0], cmd)
    return 1   # not reached
