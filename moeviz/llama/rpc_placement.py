"""Which layers run where: read from llama.cpp's load log, or planned without loading
(`moeviz info --rpc`) by llama.cpp's own rule; and a buffer an rpc-server refused, named."""
from __future__ import annotations

import re

from .rpc_connect import RpcError, parse_servers, parse_tensor_split
from .rpc_devices import add_servers, device_description, device_memory, device_name, local_gpu_devices

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
