"""llama.cpp's RPC backend: model layers on other machines (`rpc-server` there, `--rpc` here).

The same steps as llama.cpp's common/arg.cpp `--rpc`: the RPC backend registry's
`ggml_backend_rpc_add_server` gives one backend registry per server (one device per
device the server exposes), registered with ggml; moeviz then hands exactly those
devices to the loader (`llama_model_params.devices`), so `n_gpu_layers` and
`tensor_split` decide which layers go to which server, as they do for GPUs.

Stock ggml-rpc aborts the process (GGML_ABORT) on a server it cannot reach or that
stops answering. So every address is checked here first, with moeviz's own connection
and the protocol's HELLO (an rpc-server serves one client at a time: the probe is closed
before llama.cpp connects), and `check_alive` looks at the connections llama.cpp holds
(Linux: /proc/net/tcp) before each decode, so a server that died between two decodes
is a one-line error. A server that dies *during* a decode: moeviz's patch
(patches/0020-rpc-soft-failure.patch) marks it lost instead of aborting (later commands
to it are skipped, reads give zeros, graph_compute fails, so llama_decode returns -3)
and `lost_servers` asks ggml-rpc which servers are lost; the engine checks after every
decode. Without the patch the abort guard below parks the thread that met the dead
server (the process lives, that computation never ends).
"""
from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import socket
import struct
import sys

from ..errors import RunFailed, UserError
from .lib import LlamaCppUnavailable, linked_library_path, llama_cpp

# ggml/include/ggml-rpc.h and ggml/src/ggml-rpc/ggml-rpc.cpp of the vendored llama.cpp
RPC_PROTO_MAJOR, RPC_PROTO_MINOR = 7, 0
RPC_CMD_HELLO = 14
RPC_CONN_CAPS_SIZE = 24
MAX_SERVERS = 16   # GGML_RPC_MAX_SERVERS
DEFAULT_PORT = 50052
PROBE_TIMEOUT_S = 5.0


class RpcError(UserError, ValueError):
    """A bad --rpc list, or a server that cannot be reached / is not a compatible rpc-server."""


class RpcServerLost(RunFailed, RuntimeError):
    """An rpc-server holding model layers went away (`endpoint`: the one ggml-rpc lost
    during a computation, when known)."""

    def __init__(self, message: str, endpoint: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint


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


def _lib(name: str) -> ctypes.CDLL:
    """The copy libllama itself uses: the wheel holds lib<name>.so, .so.0 and .so.0.x as
    separate files, and libllama links the .so.0 (its soname); loading another name would
    load a second copy, with its own backend registry and abort callback."""
    path = linked_library_path(name)
    if path is None:
        raise LlamaCppUnavailable(f"this llama-cpp-python build has no RPC backend (lib{name}.so.0 missing); "
                                  "run 'make setup' to rebuild it with -DGGML_RPC=ON")
    return ctypes.CDLL(str(path))


def _ggml() -> ctypes.CDLL:
    lib = _lib("ggml")
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for fn, args, res in [
        ("ggml_backend_reg_by_name", [ctypes.c_char_p], vp),
        ("ggml_backend_reg_get_proc_address", [vp, ctypes.c_char_p], vp),
        ("ggml_backend_register", [vp], None),
        ("ggml_backend_reg_dev_count", [vp], sz),
        ("ggml_backend_reg_dev_get", [vp, sz], vp),
        ("ggml_backend_dev_count", [], sz),
        ("ggml_backend_dev_get", [sz], vp),
        ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_type", [vp], ctypes.c_int),
        ("ggml_backend_dev_backend_reg", [vp], vp),
        ("ggml_backend_reg_name", [vp], ctypes.c_char_p),
        ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
    ]:
        f = getattr(lib, fn)
        f.argtypes, f.restype = args, res
    return lib


_servers: dict[str, list[int]] = {}   # endpoint -> its devices, registered once per process
_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)


def registered() -> bool:
    """Whether this process has registered any rpc-server with ggml."""
    return bool(_servers)


def rpc_supported() -> bool:
    try:
        return bool(_ggml().ggml_backend_reg_by_name(b"RPC"))
    except (LlamaCppUnavailable, OSError, AttributeError):
        return False


_ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_abort_guard = None
_lost: list[str] = []   # ggml-rpc's abort messages for a server lost during a command
RPC_ABORTS = ("Remote RPC server crashed", "Failed to connect to", "RPC handshake failed")


def _on_abort(message: bytes) -> None:
    text = (message or b"").decode("utf-8", "replace").strip()
    if any(m in text for m in RPC_ABORTS):
        # ggml_abort calls abort() once this returns: never return. The thread that met
        # the dead server (ggml-rpc's dispatcher, or the decoding one) stays blocked; the
        # process, and every other thread (the web server), lives on.
        _lost.append(text)
        sys.stderr.write(f"moeviz: an rpc-server was lost during a computation ({text.split(': ', 1)[-1]}); "
                         "this model cannot run any more: restart the servers and moeviz\n")
        sys.stderr.flush()
        import threading  # noqa: PLC0415

        threading.Event().wait()
    sys.stderr.write(text + "\n")   # anything else: ggml's own behaviour (message, backtrace, abort)
    sys.stderr.flush()
    try:
        _lib("ggml-base").ggml_print_backtrace()
    except Exception:  # noqa: BLE001 - about to abort anyway
        pass


def install_abort_guard() -> None:
    """Keep the process alive when ggml-rpc would abort it for a lost server (see _on_abort)."""
    global _abort_guard
    if _abort_guard is None:
        lib = _lib("ggml-base")
        lib.ggml_set_abort_callback.argtypes = [ctypes.c_void_p]
        lib.ggml_set_abort_callback.restype = ctypes.c_void_p
        _abort_guard = _ABORT_CALLBACK(_on_abort)
        lib.ggml_set_abort_callback(ctypes.cast(_abort_guard, ctypes.c_void_p))


def lost_message() -> str | None:
    return _lost[0] if _lost else None


_SERVER_LOST = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p)
_server_lost_fn = []   # [function or None], looked up once


def _server_lost():
    if not _server_lost_fn:
        fn = None
        try:
            g = _ggml()
            reg = g.ggml_backend_reg_by_name(b"RPC")
            addr = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_server_lost") if reg else None
            fn = _SERVER_LOST(addr) if addr else None
        except (LlamaCppUnavailable, OSError, AttributeError):
            fn = None
        _server_lost_fn.append(fn)
    return _server_lost_fn[0]


def soft_failure() -> bool:
    """Whether this build's ggml-rpc fails softly on a lost server (moeviz's 0020 patch)."""
    return _server_lost() is not None


def lost_servers(endpoints: list[str]) -> list[str]:
    """The endpoints ggml-rpc has marked lost (a send or receive to them failed); [] with
    a build that has no such mark (stock ggml-rpc aborts instead)."""
    fn = _server_lost()
    if fn is None or not endpoints:
        return []
    return [ep for ep in endpoints if fn(ep.encode())]


def lost_line(endpoint: str, earlier: bool = False) -> str:
    return (f"rpc server {endpoint} went away during {'an earlier' if earlier else 'the'} run; "
            "restart it and moeviz")


def add_servers(endpoints: list[str]) -> list[int]:
    """Register the servers with ggml (each probed first); their devices, in order."""
    # Before ggml-rpc connects (it aborts the process on a failed connect). ggml-rpc keeps
    # a connection only while something uses the server: one that is open (another
    # engine's) must not be probed (the server serves one client at a time and would not
    # answer), one closed by the server means it is gone.
    held = connection_states(endpoints)
    for ep in endpoints:
        st = held.get(ep)
        if st is None:
            probe(ep)
        elif "01" not in st:
            raise RpcServerLost(f"the rpc-server at {ep} closed its connection (it exited or was stopped); "
                                "restart it and moeviz")
    g = _ggml()
    install_abort_guard()
    reg = g.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise LlamaCppUnavailable("this llama.cpp build has no RPC backend; run 'make setup' to rebuild it "
                                  "with -DGGML_RPC=ON")
    fn = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
    if not fn:
        raise LlamaCppUnavailable("llama.cpp's RPC backend has no ggml_backend_rpc_add_server")
    add = _ADD_SERVER(fn)
    devices = []
    for ep in endpoints:
        if ep not in _servers:
            server_reg = add(ep.encode())
            if not server_reg:
                raise RpcError(f"--rpc {ep}: the rpc-server exposes no devices")
            g.ggml_backend_register(server_reg)
            _servers[ep] = [g.ggml_backend_reg_dev_get(server_reg, i)
                            for i in range(g.ggml_backend_reg_dev_count(server_reg))]
        devices += _servers[ep]
    return devices


def local_gpu_devices() -> list[int]:
    """The non-RPC GPU devices, as llama.cpp's default selection would take them."""
    g = _ggml()
    out = []
    for i in range(g.ggml_backend_dev_count()):
        d = g.ggml_backend_dev_get(i)
        if g.ggml_backend_dev_type(d) in (1, 2) and g.ggml_backend_reg_name(g.ggml_backend_dev_backend_reg(d)) != b"RPC":
            out.append(d)   # GGML_BACKEND_DEVICE_TYPE_GPU = 1, IGPU = 2
    return out


def device_name(dev: int) -> str:
    return _ggml().ggml_backend_dev_name(dev).decode()


def device_description(dev: int) -> str:
    return _ggml().ggml_backend_dev_description(dev).decode()


def device_memory(dev: int) -> tuple[int, int]:
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    _ggml().ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


class DeviceList:
    """Owns the NULL-terminated device array and tensor split handed to llama_model_params."""

    def __init__(self, devices: list[int], tensor_split: list[float] | None = None):
        self.devices = list(devices)
        self._array = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)
        self._split = None
        if tensor_split:
            n = max(len(devices), 1)
            if len(tensor_split) > n:
                raise RpcError(f"--tensor-split has {len(tensor_split)} parts for {n} device(s)")
            if any(not (x >= 0) for x in tensor_split) or not sum(tensor_split) > 0:
                raise RpcError("--tensor-split wants non-negative proportions, not all zero")
            # llama.cpp reads llama_max_devices() floats
            size = max(int(llama_cpp().llama_max_devices()), n)
            self._split = (ctypes.c_float * size)(*tensor_split)

    def apply(self, mp) -> None:
        mp.devices = ctypes.cast(self._array, ctypes.c_void_p)
        if self._split is not None:
            mp.tensor_split = ctypes.cast(self._split, type(mp.tensor_split))


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


_LAYER_LINE = re.compile(r"load_tensors: layer +(\d+) assigned to device (\S+?),")


def placement_from_log(lines: list[str]) -> dict[int, str]:
    """Layer -> device name, from llama.cpp's load log ("layer N assigned to device X")."""
    out = {}
    for line in lines:
        m = _LAYER_LINE.search(line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def summarize(placement: dict[int, str], n_layer: int, names: dict[str, str]) -> list[dict]:
    """Runs of consecutive layers per device: [{"device", "host", "layers": [first, last]}].
    Layer n_layer is llama.cpp's output layer (the head)."""
    runs: list[dict] = []
    for il in sorted(placement):
        dev = placement[il]
        host = names.get(dev, "local")
        if runs and runs[-1]["device"] == dev and runs[-1]["layers"][1] == il - 1:
            runs[-1]["layers"][1] = il
        else:
            runs.append({"device": dev, "host": host, "layers": [il, il]})
    return runs


def describe_placement(runs: list[dict], n_layer: int) -> str:
    parts = []
    for r in runs:
        a, b = r["layers"]
        head = b >= n_layer
        b = min(b, n_layer - 1)
        span = (f"layer {a}" if a == b else f"layers {a}-{b}") if a < n_layer else ""
        what = ", ".join(x for x in (span, "output" if head else "") if x)
        parts.append(f"{what} on {r['host']}")
    return "; ".join(parts)


_ALLOC_FAILED = re.compile(r"failed to allocate (RPC\d+)\[([^\]]+)\] buffer of size (\d+)")


def allocation_failure(lines: list[str], offered: dict[str, int]) -> str | None:
    """One line for llama.cpp's failure to allocate a buffer on an rpc-server (the
    weights, the KV cache or the compute buffer: ggml logs "failed to allocate
    RPC0[host:port] buffer of size N"), naming the server and the memory it offers
    (`offered`: endpoint -> bytes, its devices' total as reported before the load;
    `moeviz rpc-server --mem` sets it); None when no such line was logged."""
    for line in lines:
        m = _ALLOC_FAILED.search(line)
        if m:
            ep, size = m.group(2), int(m.group(3))
            have = offered.get(ep)
            limit = f"; it offers {have / 2**20:.0f} MiB in all (moeviz rpc-server --mem)" if have else ""
            return (f"rpc server {ep} cannot take a {size / 2**20:.1f} MiB buffer{limit}: "
                    "put fewer layers there (--n-gpu-layers, --tensor-split) or give it more memory")
    return None


def offered_memory(devices: list[int]) -> dict[str, int]:
    """endpoint -> the total memory its RPC devices report (llama.cpp's device
    description of an RPC device is its endpoint)."""
    out: dict[str, int] = {}
    for d in devices:
        ep = device_description(d)
        out[ep] = out.get(ep, 0) + device_memory(d)[1]
    return out


# Liveness of the connections llama.cpp holds --------------------------------------------
_TCP_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "07": "CLOSE"}


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
    """RpcServerLost when ggml-rpc's connection to a server (held while a model has
    buffers there) has been closed by the server's end: it exited or was killed. Linux
    only (/proc/net/tcp); elsewhere only losses met during a computation are seen."""
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


def plan_placement(n_layer: int, rpc, n_gpu_layers: int, tensor_split=None) -> tuple[list[dict], str]:
    """Where llama.cpp will put each layer, without loading the model: its own rule
    (llama-model.cpp load_tensors: split points by tensor_split or the devices' free
    memory, the last n_gpu_layers of the n_layer + 1 layers offloaded, -1 = all)."""
    endpoints = parse_servers(rpc) if rpc else []
    split = parse_tensor_split(tensor_split)
    devs = add_servers(endpoints) if endpoints else local_gpu_devices()
    names = {device_name(d): device_description(d) for d in devs}
    if split and len(split) > max(len(devs), 1):
        raise RpcError(f"--tensor-split has {len(split)} parts for {len(devs)} device(s)")
    if split:
        weights = [split[i] if i < len(split) else 0.0 for i in range(len(devs))]
    else:
        weights = []
        for d in devs:
            free, total = device_memory(d)
            weights.append(float(free))
    total_w = sum(weights) or 1.0
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc / total_w)
    ngl = n_gpu_layers if n_gpu_layers >= 0 else n_layer + 1
    start = max(n_layer + 1 - ngl, 0)
    act = min(ngl, n_layer + 1) if devs else 0
    placed = {}
    for il in range(n_layer + 1):
        if il < start or il - start >= act:
            placed[il] = "CPU"
        else:
            x = (il - start) / act
            j = next((i for i, c in enumerate(cum) if c > x), len(cum) - 1)
            placed[il] = device_name(devs[j])
    runs = summarize(placed, n_layer, names)
    return runs, describe_placement(runs, n_layer)
