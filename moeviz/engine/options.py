"""Load-time options: what a loaded model is built with, fixed for its life.

One frozen dataclass instead of the engine's keyword arguments. Each field carries the
CLI flag that sets it, its argparse attribute and its help text (`metadata`), so the
CLI derives --n-ctx, --kv-type, ... from here, beside the per-run settings of
moeviz/settings.py (sampling, candidates, interventions asked per run):

    opts = EngineOptions(n_ctx=2048, kv_type="f32")
    opts = EngineOptions.from_args(args)         # an argparse namespace; absent flags keep defaults
    engine = Engine(path, opts, progress=...)

`experts_per_token` and `mask` here are the model's own routing for runs that ask for
nothing (serve --experts-per-token / --mask); a run may ask for others.
Values are checked where they are used (builder.py, llama/model.py), before llama.cpp
sees them, each with its own one-line error.
"""
from __future__ import annotations

import dataclasses

# Host memory allowed for the logits of one prefill chunk when every prompt row must
# be an output (callback capture: llama.cpp runs the last layer only for output rows).
# With a 150k vocabulary that is ~100 rows per chunk instead of a 1 GB buffer.
DEFAULT_OUTPUT_BUDGET = 64 << 20
KV_TYPES = {"f16": 1, "f32": 0}  # ggml types for the KV cache (f16 is llama.cpp's default)
# Flash attention on the CPU rounds Q to f16: with it off and an f32 KV cache, routing
# matches a float64 reference to ~1e-7 instead of ~1e-3 (tests use that for exactness).
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}
CAPTURES = ("auto", "native", "callback")


def _opt(default, flag: str | None, help: str, *, dest: str | None = None, choices=None, metavar=None, kind=None):
    """A field with what the CLI needs to make its flag (flag None: no flag, API only)."""
    meta = {"flag": flag, "help": help, "dest": dest, "choices": choices, "metavar": metavar, "type": kind}
    return dataclasses.field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    # the context
    n_ctx: int = _opt(4096, "--n-ctx", "context size in tokens (default 4096)", kind=int)
    n_batch: int = _opt(512, None, "tokens per llama_decode call (logical batch)", kind=int)
    n_ubatch: int | None = _opt(None, None, "tokens per physical batch (default: min(n_batch, 512))", kind=int)
    n_threads: int | None = _opt(None, "--threads", "CPU threads (default: all cores)", dest="threads", kind=int)
    kv_type: str = _opt("f16", "--kv-type", "KV cache type (default f16)", choices=tuple(KV_TYPES))
    flash_attn: str = _opt("auto", "--flash-attn",
                           "flash attention (off + --kv-type f32 gives the most exact arithmetic on the CPU)",
                           choices=tuple(FLASH_ATTN))
    parallel: int = _opt(1, "--parallel", "decode up to N requests together in one batch (continuous batching, as "
                         "llama.cpp's server slots); each gets --n-ctx / N tokens of context (default 1)",
                         metavar="N", kind=int)
    # where the weights go
    n_gpu_layers: int = _opt(0, "--n-gpu-layers", "layers to offload to the GPU (-1 = all)", kind=int)
    cpu_moe: bool = _opt(False, "--cpu-moe", "keep all routed-expert weights in CPU memory (attention and the rest "
                         "follow --n-gpu-layers)", kind=bool)
    n_cpu_moe: int = _opt(0, "--n-cpu-moe", "keep the routed-expert weights of the first N layers in CPU memory",
                          metavar="N", kind=int)
    rpc: str | list[str] | None = _opt(None, "--rpc", "llama.cpp rpc-servers (moeviz rpc-server) that take the "
                                       "layers --n-gpu-layers offloads", metavar="HOST:PORT[,...]")
    tensor_split: str | list[float] | None = _opt(None, "--tensor-split", "share of the offloaded layers per device "
                                                  "(--rpc servers in order), e.g. 1,1 (default: by free memory)",
                                                  metavar="P[,P...]")
    # routing capture
    capture: str = _opt("auto", "--capture", "routing capture backend (auto: native when the patched library is "
                        "installed)", choices=CAPTURES)
    output_budget: int = _opt(DEFAULT_OUTPUT_BUDGET, None, "host bytes for one prefill chunk's logits when every "
                              "prompt row is an output", kind=int)
    # the routers' own state for runs that ask for nothing
    experts_per_token: int | None = _opt(None, "--experts-per-token", "route every token to N experts per MoE layer "
                                         "instead of the model's top-k (1 to n_expert; needs the patched llama.cpp)",
                                         metavar="N", kind=int)
    mask: str | list | None = _opt(None, "--mask", "never select these experts (model layer index:expert id; L:* = "
                                   "every expert of layer L, *:E = expert E in every MoE layer); the router picks "
                                   "the best unmasked ones", metavar="L:E[,L:E...]")

    @classmethod
    def from_args(cls, args, **overrides) -> "EngineOptions":
        """The options an argparse namespace sets (each field read from its `dest`,
        else its name); a flag the command does not have keeps its default."""
        values = {}
        for f in dataclasses.fields(cls):
            dest = f.metadata.get("dest", f.name)
            if hasattr(args, dest):
                values[f.name] = getattr(args, dest)
        return cls(**{**values, **overrides})

    def replace(self, **changes) -> "EngineOptions":
        return dataclasses.replace(self, **changes)


def option_fields() -> list[dataclasses.Field]:
    """Every load-time option with its flag metadata: what the CLI builds flags from."""
    return list(dataclasses.fields(EngineOptions))
