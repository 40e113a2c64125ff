"""rpc-servers registered with ggml, and the devices handed to llama.cpp's loader.

The same steps as llama.cpp's common/arg.cpp `--rpc`: the RPC backend registry's
`ggml_backend_rpc_add_server` gives one backend registry per server (one device per
device the server exposes), registered with ggml; moeviz then hands exactly those
devices to the loader (`llama_model_params.devices`), so `n_gpu_layers` and
`tensor_split` decide which layers go to which server, as they do for GPUs.
"""
from __future__ import annotations

import ctypes

from .lib import LlamaCppUnavailable, llama_cpp
from .log import llama_log
from .rpc_connect import CONNECT_TIMEOUT_S, RpcError, command_timeout_s, probe
from .rpc_ggml import ggml, proc
from .rpc_liveness import RpcServerLost, connection_states, install_abort_guard, lost_reason, lost_servers

_servers: dict[str, list[int]] = {}   # endpoint -> its devices, registered once per process
_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
_SET_TIMEOUTS = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int)


def registered() -> bool:
    """Whether this process has registered any rpc-server with ggml."""
    return bool(_servers)


def set_timeouts() -> bool:
    """Tell ggml-rpc how long to wait (rpc_connect: CONNECT_TIMEOUT_S, $MOEVIZ_RPC_TIMEOUT);
    False with a build that has no timeouts (it waits for ever on a frozen server)."""
    fn = proc("ggml_backend_rpc_set_timeouts", _SET_TIMEOUTS)
    if fn is None:
        return False
    fn(int(CONNECT_TIMEOUT_S * 1000), max(1, int(command_timeout_s() * 1000)))
    return True


def add_servers(endpoints: list[str]) -> list[int]:
    """Register the servers with ggml (each probed first); their devices, in order."""
    # Before ggml-rpc connects (stock ggml-rpc aborts the process on a failed connect).
    # ggml-rpc keeps a connection only while something uses the server: one that is open
    # (another engine's) must not be probed (the server serves one client at a time and
    # would not answer), one closed by the server means it is gone.
    held = connection_states(endpoints)
    for ep in endpoints:
        st = held.get(ep)
        if st is None:
            probe(ep)
        elif "01" not in st:
            raise RpcServerLost(f"the rpc-server at {ep} closed its connection (it exited or was stopped); "
                                "restart it and moeviz")
    llama_log()   # ggml-rpc's own lines (why it lost a server) go to llama.cpp's log, kept
    g = ggml()
    install_abort_guard()
    reg = g.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise LlamaCppUnavailable("this llama.cpp build has no RPC backend; run 'make setup' to rebuild it "
                                  "with -DGGML_RPC=ON")
    fn = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
    if not fn:
        raise LlamaCppUnavailable("llama.cpp's RPC backend has no ggml_backend_rpc_add_server")
    set_timeouts()
    add = _ADD_SERVER(fn)
    devices = []
    for ep in endpoints:
        if ep not in _servers:
            server_reg = add(ep.encode())
            if lost_servers([ep]):   # it took the connection and its HELLO, then went silent
                raise RpcError(f"--rpc {ep}: the rpc-server stopped answering while moeviz registered it "
                               f"({lost_reason(ep) or 'no answer'}); restart it")
            if not server_reg:
                raise RpcError(f"--rpc {ep}: the rpc-server exposes no devices")
            g.ggml_backend_register(server_reg)
            _servers[ep] = [g.ggml_backend_reg_dev_get(server_reg, i)
                            for i in range(g.ggml_backend_reg_dev_count(server_reg))]
        devices += _servers[ep]
    return devices


def local_gpu_devices() -> list[int]:
    """The non-RPC GPU devices, as llama.cpp's default selection would take them."""
    g = ggml()
    out = []
    for i in range(g.ggml_backend_dev_count()):
        d = g.ggml_backend_dev_get(i)
        if g.ggml_backend_dev_type(d) in (1, 2) and g.ggml_backend_reg_name(g.ggml_backend_dev_backend_reg(d)) != b"RPC":
            out.append(d)   # GGML_BACKEND_DEVICE_TYPE_GPU = 1, IGPU = 2
    return out


def device_name(dev: int) -> str:
    return ggml().ggml_backend_dev_name(dev).decode()


def device_description(dev: int) -> str:
    return ggml().ggml_backend_dev_description(dev).decode()


def device_memory(dev: int) -> tuple[int, int]:
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    ggml().ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


def offered_memory(devices: list[int]) -> dict[str, int]:
    """endpoint -> the total memory its RPC devices report (llama.cpp's device
    description of an RPC device is its endpoint)."""
    out: dict[str, int] = {}
    for d in devices:
        ep = device_description(d)
        out[ep] = out.get(ep, 0) + device_memory(d)[1]
    return out


class DeviceList:
    """Owns the NULL-terminated device array and tensor split handed to llama_model_params
    (read by the loader only: never written after it is built)."""

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
