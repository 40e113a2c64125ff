"""What builds a loaded model: the file checked, devices, offload, RPC, the context, capture.

    model = build_model(path, EngineOptions(...), progress=None)   # a BuiltModel
    model.lm, model.info, model.capture, model.liveness, model.placement
    model.close()

The decoding side (core.Engine, slots.Scheduler) gets a BuiltModel and never sees how
it was placed: RPC is behind `liveness` (engine/liveness.py), offload and devices are
load-time only.
"""
from __future__ import annotations

import dataclasses

from ..capture.factory import make_capture
from ..capture.protocol import CaptureBackend
from ..errors import UserError
from ..gguf_info import ModelFileError, ModelInfo
from ..llama import rpc as rpc_backend
from ..llama.lib import llama_cpp
from ..llama.log import llama_log
from ..llama.model import LoadedModel, ModelLoadError
from ..llama.offload import TensorOverrides, expert_patterns
from .liveness import Liveness, LocalModel, RpcLiveness
from .options import FLASH_ATTN, KV_TYPES, EngineOptions
from .sampling import SettingsError


class NotMoEError(UserError, ValueError):
    """The model has no routed experts: nothing to record."""


class NotCausalError(UserError, ValueError):
    """The model is not decoded left to right (a diffusion model): moeviz records generation."""


@dataclasses.dataclass(eq=False)
class BuiltModel:
    lm: LoadedModel
    info: ModelInfo
    capture: CaptureBackend
    liveness: Liveness
    rpc_servers: list[str]           # --rpc, in order ([] for a local model)
    placement: list[dict]            # which layers went where (rpc.summarize)
    options: EngineOptions

    def placement_text(self) -> str:
        """Which layers run where: "layers 0-3 on 127.0.0.1:50052; ..." ("" when unknown)."""
        return rpc_backend.describe_placement(self.placement, self.info.n_layer)

    def close(self) -> None:
        if self.lm is None:
            return
        if not self.liveness.can_free():
            # freeing the model sends RPC commands to the dead server: stock ggml-rpc
            # would abort the process; the memory is left to the exit
            self.lm.model = self.lm.ctx = None
        else:
            self.lm.close()
        self.lm = None


def check_model_info(model_path, info: ModelInfo) -> None:
    """Refused before llama.cpp sees the file: what moeviz cannot record, or what would
    abort the process."""
    if not info.is_moe:
        raise NotMoEError(f"{model_path} is a dense model ({info.architecture}, no routed experts): nothing to record")
    if info.load_error:
        raise ModelFileError(f"{model_path}: {info.load_error}")
    if info.n_expert_used_per_layer:
        raise NotMoEError(f"{model_path} uses a different top-k per layer ({sorted(set(info.n_expert_used_per_layer))}): "
                          "moeviz traces have one top-k for all MoE layers")
    if not info.causal:
        raise NotCausalError(f"{info.architecture} is a {info.decoding} model, not decoded left to right: moeviz "
                             "records token-by-token generation")


def build_model(model_path, options: EngineOptions, progress=None) -> BuiltModel:
    """progress: called with the loaded fraction of the model (0.0 .. 1.0), see LoadedModel."""
    from ..gguf_info import read_model_info  # noqa: PLC0415

    o = options
    info = read_model_info(model_path)
    check_model_info(model_path, info)
    capture = make_capture(o.capture, info)
    if o.kv_type not in KV_TYPES:
        raise SettingsError(f"unknown KV cache type {o.kv_type!r}; choose one of {', '.join(KV_TYPES)}")
    if o.flash_attn not in FLASH_ATTN:
        raise SettingsError(f"unknown flash attention setting {o.flash_attn!r}; choose one of {', '.join(FLASH_ATTN)}")

    def configure_context(cp):
        cp.type_k = cp.type_v = KV_TYPES[o.kv_type]
        cp.flash_attn_type = FLASH_ATTN[o.flash_attn]
        capture.configure_context(cp)

    # Expert tensors in host memory (--cpu-moe / --n-cpu-moe), as llama.cpp does it.
    if o.n_cpu_moe < 0:
        raise SettingsError(f"--n-cpu-moe must be zero or more, got {o.n_cpu_moe}")
    offload = TensorOverrides(expert_patterns(o.cpu_moe, o.n_cpu_moe))
    servers: list[str] = rpc_backend.parse_servers(o.rpc) if o.rpc else []
    split = rpc_backend.parse_tensor_split(o.tensor_split)
    devices = None
    if servers:
        # probed, then registered with ggml (it aborts on an unreachable server)
        devices = rpc_backend.DeviceList(rpc_backend.add_servers(servers), split)
    elif split or rpc_backend.registered():
        # another engine in this process registered RPC servers: llama.cpp's default
        # device list would take them too; this one keeps to the local GPUs
        devices = rpc_backend.DeviceList(rpc_backend.local_gpu_devices(), split)

    def configure_model(mp):
        offload.apply(mp)
        if devices is not None:
            devices.apply(mp)

    # what each server offers (moeviz rpc-server --mem), to name it if a buffer does not fit
    offered = rpc_backend.offered_memory(devices.devices) if servers else {}
    mark = llama_log().mark()
    try:
        lm = LoadedModel(model_path, n_ctx=o.n_ctx, n_batch=o.n_batch, n_threads=o.n_threads,
                         n_gpu_layers=o.n_gpu_layers, configure_model=configure_model,
                         configure_context=configure_context, info=info, n_ubatch=o.n_ubatch,
                         progress=progress, n_seq_max=o.parallel)
    except ModelLoadError as e:
        line = rpc_backend.allocation_failure([t for _, t in llama_log().since(mark)], offered) if servers else None
        if line is None:
            raise
        raise ModelLoadError(line) from e
    # which layers went where (llama.cpp's load log); layer n_layer is the output head
    names = {}
    if devices is not None:
        names = {rpc_backend.device_name(d): rpc_backend.device_description(d) for d in devices.devices}
    placed = rpc_backend.placement_from_log([line for _, line in llama_log().since(mark)])
    placement = rpc_backend.summarize(placed, info.n_layer, names)
    if _is_diffusion(lm.model):
        lm.close()
        raise NotCausalError(f"{info.architecture} is a diffusion model, not decoded left to right: moeviz records "
                             "token-by-token generation (llama.cpp runs it with llama-diffusion-cli)")
    if o.parallel > lm.n_batch:
        lm.close()
        raise SettingsError(f"--parallel {o.parallel} needs batches of {o.parallel} tokens; this context's are "
                            f"{lm.n_batch} (raise --n-ctx)")
    capture.attach(lm.ctx)
    liveness = RpcLiveness(servers) if servers else LocalModel()
    return BuiltModel(lm, lm.info, capture, liveness, servers, placement, o)


def _is_diffusion(model) -> bool:
    fn = getattr(llama_cpp(), "llama_model_is_diffusion", None)
    return bool(fn(model)) if fn is not None else False
