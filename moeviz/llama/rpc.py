"""llama.cpp's RPC backend: model layers on other machines (`rpc-server` there, `--rpc` here).

One name for the pieces, each in its own module:
  rpc_connect    addresses (--rpc, --tensor-split), moeviz's HELLO probe, the timeouts
  rpc_devices    servers registered with ggml, the devices handed to the loader
  rpc_liveness   whether the servers are still there (lost, closed, stopped answering)
  rpc_placement  which layers run where; a buffer a server refused, named
  rpc_ggml       the ggml libraries and ggml-rpc's functions

Stock ggml-rpc aborts the process (GGML_ABORT) on a server it cannot reach or that stops
answering, and waits for ever on one that is frozen. So every address is probed here
first (a connection and the protocol's HELLO, bounded in time; an rpc-server serves one
client at a time: the probe is closed before llama.cpp connects); moeviz's patches make
ggml-rpc mark a server lost instead of aborting (0020: later commands to it are skipped,
reads give zeros, graph_compute fails, so llama_decode returns -3) and bound every wait
(0050: connect and HELLO 5 s, any command $MOEVIZ_RPC_TIMEOUT s, default 60). The engine's
liveness hook (moeviz/engine/liveness.py) asks `check_alive` before each decode and
`lost_servers` after it. Without the patches the abort guard parks the thread that met
the dead server (the process lives, that computation never ends).
"""
from __future__ import annotations

from .rpc_connect import (COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, DEFAULT_PORT, MAX_SERVERS, PROBE_TIMEOUT_S,
                          RPC_CMD_HELLO, RPC_CONN_CAPS_SIZE, RPC_PROTO_MAJOR, RPC_PROTO_MINOR, RpcError,
                          command_timeout_s, parse_servers, parse_tensor_split, probe)
from .rpc_devices import (DeviceList, add_servers, device_description, device_memory, device_name,
                          local_gpu_devices, offered_memory, registered, set_timeouts)
from .rpc_ggml import rpc_supported
from .rpc_liveness import (RPC_ABORTS, RpcServerLost, check_alive, connection_states, install_abort_guard,
                           lost_line, lost_message, lost_reason, lost_servers, soft_failure)
from .rpc_placement import allocation_failure, describe_placement, placement_from_log, plan_placement, summarize

__all__ = [
    "COMMAND_TIMEOUT_S", "CONNECT_TIMEOUT_S", "DEFAULT_PORT", "MAX_SERVERS", "PROBE_TIMEOUT_S", "RPC_ABORTS",
    "RPC_CMD_HELLO", "RPC_CONN_CAPS_SIZE", "RPC_PROTO_MAJOR", "RPC_PROTO_MINOR", "DeviceList", "RpcError",
    "RpcServerLost", "add_servers", "allocation_failure", "check_alive", "command_timeout_s",
    "connection_states", "describe_placement", "device_description", "device_memory", "device_name",
    "install_abort_guard", "local_gpu_devices", "lost_line", "lost_message", "lost_reason", "lost_servers",
    "offered_memory", "parse_servers", "parse_tensor_split", "placement_from_log", "plan_placement", "probe",
    "registered", "rpc_supported", "set_timeouts", "soft_failure", "summarize",
]
