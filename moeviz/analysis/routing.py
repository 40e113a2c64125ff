"""The routing a metric looks at: one trace's arrays, cut to the chosen tokens.

Every metric takes a `Routing` rather than a `Trace` so the token filter
(`--tokens prompt|generated|all`) is applied once, and so the arrays stay views of
the trace's (prompt tokens come first, so each selection is a contiguous slice:
nothing is copied, which matters for million-token traces).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ..errors import UserError

TOKEN_SELECTIONS = ("all", "prompt", "generated")


class AnalysisError(UserError, ValueError):
    """The analysis cannot give a correct number for this input; the message says why."""


@dataclasses.dataclass(frozen=True, eq=False)
class Routing:
    """Routing of the selected tokens: `expert_ids`/`weights` [n, L, k], `probs` [n, L, E] or None.

    Layer axis index i is MoE layer i; `moe_layers[i]` is its model layer index.
    """

    model: dict
    expert_ids: np.ndarray
    weights: np.ndarray
    probs: np.ndarray | None
    tokens: list            # the selected token dicts {id, text, prompt}
    selection: str          # "all", "prompt" or "generated"
    name: str               # how messages name this trace (its file, usually)

    @property
    def n_tokens(self) -> int:
        return self.expert_ids.shape[0]

    @property
    def n_layers(self) -> int:
        return self.expert_ids.shape[1]

    @property
    def k(self) -> int:
        return self.expert_ids.shape[2]

    @property
    def n_expert(self) -> int:
        return int(self.model["n_expert"])

    @property
    def moe_layers(self) -> list[int]:
        return list(self.model["moe_layers"])

    @functools.cached_property
    def token_ids(self) -> np.ndarray:
        return np.fromiter((t["id"] for t in self.tokens), dtype=np.int64, count=len(self.tokens))

    def layer_slice(self, lo: int, hi: int) -> "Routing":
        """The same tokens, MoE layers lo..hi-1 only (views, no copy)."""
        cut = slice(lo, hi)
        return dataclasses.replace(
            self, model={**self.model, "moe_layers": self.moe_layers[cut]}, expert_ids=self.expert_ids[:, cut],
            weights=self.weights[:, cut], probs=None if self.probs is None else self.probs[:, cut])

    def token_text(self, token_id: int) -> str:
        """The text of a token id as it appears in this trace."""
        return self._texts.get(int(token_id), "")

    @functools.cached_property
    def _texts(self) -> dict[int, str]:
        texts: dict[int, str] = {}
        for t in self.tokens:
            # A character split over byte tokens shows on the last one; earlier ones
            # have "" (docs/trace-format.md), so keep the first non-empty text seen.
            if not texts.get(t["id"]):
                texts[t["id"]] = t["text"]
        return texts

    def layer_index(self, layer: int) -> int:
        """Position on the layer axis of model layer `layer`; dense layers are refused by name."""
        layers = self.moe_layers
        if layer in layers:
            return layers.index(layer)
        if layer in (self.model.get("dense_layers") or []):
            raise AnalysisError(f"layer {layer} is a dense layer (no routed experts); MoE layers are {_span(layers)}")
        raise AnalysisError(f"no MoE layer {layer} in {self.name}; MoE layers are {_span(layers)}")

    def check_expert(self, expert: int) -> int:
        if not 0 <= expert < self.n_expert:
            raise AnalysisError(f"expert {expert} is outside [0, {self.n_expert})")
        return expert


def _span(layers: list[int]) -> str:
    if layers and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(map(str, layers))


def select_tokens(trace, tokens: str = "all", name: str | None = None) -> Routing:
    """The routing of `trace`'s prompt, generated or all tokens; AnalysisError when there are none."""
    name = name or trace.model.get("name") or "trace"
    if tokens not in TOKEN_SELECTIONS:
        raise AnalysisError(f"--tokens must be one of {', '.join(TOKEN_SELECTIONS)}, not {tokens!r}")
    n = trace.n_tokens
    if tokens == "all":
        rows = slice(0, n)
    else:
        mask = trace.prompt_mask if tokens == "prompt" else ~trace.prompt_mask
        idx = np.flatnonzero(mask)
        # Prompt tokens come first (the schema checks it), so a selection is a slice;
        # a hand-built trace that breaks the rule still gets the right rows, copied.
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if idx.size and idx[-1] - idx[0] + 1 == idx.size else idx
    toks = trace.tokens[rows] if isinstance(rows, slice) else [trace.tokens[i] for i in rows]

    def pick(a):
        return None if a is None else a[rows]

    ids = pick(trace.expert_ids)
    if ids.shape[0] == 0:
        what = "tokens" if tokens == "all" else f"{tokens} tokens"
        raise AnalysisError(f"{name} has no {what} to analyse")
    if ids.ndim != 3 or ids.shape[1] == 0:
        raise AnalysisError(f"{name} has no MoE layers to analyse")
    return Routing(model=trace.model, expert_ids=ids, weights=pick(trace.weights), probs=pick(trace.probs),
                   tokens=toks, selection=tokens, name=name)


def same_model(routings: list[Routing]) -> None:
    """Refuse to compare traces of different models: expert 5 of one is not expert 5 of another."""
    first = routings[0]
    for r in routings[1:]:
        for field in ("name", "architecture", "n_expert", "n_expert_used", "moe_layers"):
            a, b = first.model.get(field), r.model.get(field)
            if a != b:
                raise AnalysisError(f"cannot compare traces of different models: {first.name} has "
                                    f"{field} {a!r}, {r.name} has {b!r}")


def compact_dtype(n_values: int) -> np.dtype:
    """The smallest unsigned type holding 0..n_values-1 (expert ids, layer*expert codes)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_values <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.int64)
