"""Layer-parallel passes for long traces.

Every MoE layer's tallies and LRU stack distances depend on that layer's routing
only, so `jobs` worker processes can each take a contiguous range of layers. The
workers are forked: they see the trace's arrays without a copy (copy-on-write, and
nothing writes them) and send back only their layers' results. Threads would not
do: much of each pass is short numpy calls that hold the GIL (measured on 2 cores:
2 threads 1.2x, 2 processes 1.7x).

Used only when asked (`jobs` > 1, which `moeviz stats` does by default) and only for
traces big enough to pay for starting processes; where fork is not available
(Windows) the work runs in this process.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, TypeVar

from .routing import Routing

MIN_PARALLEL_ASSIGNMENTS = 1 << 22    # below ~4M (token, layer, k) entries one process is as fast
T = TypeVar("T")

_shared: Routing | None = None        # the routing the forked workers read


def layer_ranges(n_layers: int, jobs: int) -> list[tuple[int, int]]:
    """`jobs` (at most n_layers) contiguous ranges of nearly equal size covering the layers."""
    parts = max(1, min(jobs, n_layers))
    bounds = [round(i * n_layers / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def map_layer_ranges(routing: Routing, fn: Callable[[Routing], T], jobs: int) -> list[T]:
    """fn applied to `routing` cut to each layer range, in order; in forked worker
    processes when jobs > 1 and the trace is big enough, else here in one call."""
    ranges = layer_ranges(routing.n_layers, jobs)
    if (len(ranges) == 1 or routing.expert_ids.size < MIN_PARALLEL_ASSIGNMENTS
            or "fork" not in multiprocessing.get_all_start_methods()):
        return [fn(routing)]
    global _shared
    _shared = routing
    try:
        with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
            return pool.map(_apply, [(fn, lo, hi) for lo, hi in ranges], chunksize=1)
    finally:
        _shared = None


def _apply(task):
    fn, lo, hi = task
    return fn(_shared.layer_slice(lo, hi))
