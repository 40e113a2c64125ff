"""The bottom layer: llama.cpp through ctypes, and owning wrappers around its objects.

lib      llama-cpp-python's bindings, ggml pieces it does not bind (tensor struct, reads)
log      llama.cpp's log routed through Python (errors are built from it)
model    LoadedModel: a llama_model + llama_context + vocabulary, freed together
batch    Batch: a llama_batch, freed with it
sampler  SamplerChain: llama.cpp's sampler chain
offload  tensor buffer-type overrides (--cpu-moe, --n-cpu-moe)
Nothing here knows about routing capture, traces or the server.
"""
from .lib import LlamaCppUnavailable, llama_cpp

__all__ = ["LlamaCppUnavailable", "llama_cpp"]
