"""Routing capture through llama.cpp's eval callback (works on an unpatched build).

The scheduler asks `cb_eval(t, ask=True)` for every graph node; we answer yes only
for the routing tensors by exact name, and copy them out when it calls back with
ask=False. Per layer and ubatch, llama.cpp names: `ffn_moe_probs-<il>` (before
selection), `ffn_moe_topk-<il>` (a view of an argsort, strided), then the weights as
they are refined: `ffn_moe_weights`, `_softmax`, `_norm`, `_scaled`. The last
weights tensor seen after a layer's top-k is the one applied to the experts.

Cost: every answered yes splits the graph and synchronizes the backend, and the
ask is a Python call per node. The native capture (patched build) has neither.
"""
from __future__ import annotations

import ctypes

from ..llama.lib import NAME_OFFSET, llama_cpp, read_tensor
from .routing import BatchRouting, LayerChunks

_PREFIX = b"ffn_moe_"
_TOPK, _WEIGHTS, _PROBS = 0, 1, 2
_WEIGHT_STAGES = ("ffn_moe_weights", "ffn_moe_weights_softmax", "ffn_moe_weights_norm", "ffn_moe_weights_scaled")


class CallbackCapture:
    name = "callback"

    # llama.cpp computes the last layer only for rows whose output is requested, so
    # with this backend every prompt row must be an output (the engine bounds the cost).
    needs_all_outputs = True

    def __init__(self, moe_layers: list[int], n_expert_used: int, n_expert: int, routers_per_layer: int = 1):
        self.chunks = LayerChunks(moe_layers, n_expert_used, n_expert, False)
        # GroveMoE runs build_moe_ffn twice per layer and ubatch (routed experts, then its
        # "chunk" experts derived from the same router): the first call is the layer's routing.
        self.routers_per_layer = routers_per_layer
        self._seen = [[0, 0] for _ in moe_layers]   # per layer: top-k and probs tensors seen
        self._skip = [False] * len(moe_layers)     # the current call of a layer is not its first
        self._want_routing: dict[bytes, tuple[int, int]] = {}
        self._want_probs: dict[bytes, tuple[int, int]] = {}
        for li, il in enumerate(moe_layers):
            self._want_routing[f"ffn_moe_topk-{il}".encode()] = (li, _TOPK)
            for stage in _WEIGHT_STAGES:
                self._want_routing[f"{stage}-{il}".encode()] = (li, _WEIGHTS)
            self._want_probs[f"ffn_moe_probs-{il}".encode()] = (li, _PROBS)
        self._want_all = {**self._want_routing, **self._want_probs}
        self.want = self._want_routing
        self.active = False
        self.error: Exception | None = None
        # Keep a reference: ctypes callbacks must outlive the context that calls them.
        self._cfunc = llama_cpp().ggml_backend_sched_eval_callback(self._on_node)

    # Engine hooks ------------------------------------------------------------------
    def configure_context(self, cparams) -> None:
        cparams.cb_eval = self._cfunc
        cparams.cb_eval_user_data = None

    def attach(self, ctx) -> None:  # nothing to do after context creation
        pass

    def set_experts_per_token(self, k: int) -> None:
        self.chunks.k = k

    def begin(self, probs: bool = False) -> None:
        """Start collecting: only decodes between begin() and finish() are recorded,
        so llama.cpp's own warm-up or reserve passes never leak into a trace."""
        self.want = self._want_all if probs else self._want_routing
        self.chunks.want_probs = probs
        self.chunks.reset()
        self._seen = [[0, 0] for _ in self._seen]
        self._skip = [False] * len(self._skip)
        self.error = None
        self.active = True

    def finish(self, n_tokens: int) -> BatchRouting:
        self.active = False
        if self.error is not None:
            raise self.error
        return self.chunks.stack(n_tokens)

    def abort(self) -> None:
        self.active = False

    # The callback itself: runs for every graph node, keep the common path short ------
    def _on_node(self, t, ask, _user) -> bool:
        if not self.active:
            return not ask  # ask: "no thanks"; data phase (never reached): continue
        name = ctypes.string_at(t + NAME_OFFSET)
        if ask:
            return name.startswith(_PREFIX) and name in self.want
        try:
            li, kind = self.want[name]
            if self.routers_per_layer > 1 and kind != _WEIGHTS:
                seen = self._seen[li]
                slot = 0 if kind == _TOPK else 1
                later_call = seen[slot] % self.routers_per_layer != 0
                seen[slot] += 1
                if kind == _TOPK:
                    self._skip[li] = later_call
                if later_call:
                    return True
            elif kind == _WEIGHTS and self._skip[li]:
                return True
            arr = read_tensor(t)
            if kind == _TOPK:
                # numpy shape (1, 1, n_rows, k) or (1, n_rows, k): rows x k
                self.chunks.ids[li].append(arr.reshape(-1, self.chunks.k).astype("int32", copy=False))
            elif kind == _WEIGHTS:
                rows = arr.reshape(-1, self.chunks.k)
                # Later stages of the same ubatch replace earlier ones (final weights win).
                if len(self.chunks.weights[li]) == len(self.chunks.ids[li]):
                    self.chunks.weights[li][-1] = rows
                else:
                    self.chunks.weights[li].append(rows)
            else:
                self.chunks.probs[li].append(arr.reshape(-1, self.chunks.n_expert).astype("float32", copy=False))
        except Exception as e:  # never let an exception cross into C
            self.error = e
            return False  # stop the graph; finish() re-raises
        return True
