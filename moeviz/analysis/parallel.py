"""Parallel passes for long traces, in forked worker processes.

The tally pass (tallies.py) can be cut anywhere along the tokens: each worker takes a
contiguous range of token rows and the partial tallies add up. The LRU simulation
(expert_cache.py) runs along the tokens, but every MoE layer's cache is independent,
so it is cut along the layers. Workers are forked: they see the trace's arrays
without a copy (copy-on-write, and nothing writes them) and send back only their
results. Threads would not do: much of each pass is short numpy calls that hold
the GIL (measured on 2 cores, LRU pass: 2 threads 1.2x, 2 processes 1.7–2.0x).

Used only when asked (`jobs` > 1, which `moeviz stats` does by default) and only for
traces big enough to pay for starting processes; only on Linux, where forking a
process that has run numpy is safe (macOS's system libraries are not fork-safe,
Windows cannot fork): elsewhere the work runs in this process.
"""
from __future__ import annotations

import multiprocessing
import sys
from typing import Callable, TypeVar

from .routing import Routing

MIN_PARALLEL_ASSIGNMENTS = 1 << 22    # below ~4M (token, layer, k) entries one process is as fast
T = TypeVar("T")

_shared: Routing | None = None        # the routing the forked workers read


def split(length: int, jobs: int) -> list[tuple[int, int]]:
    """`jobs` (at most `length`) contiguous ranges of nearly equal size covering 0..length-1."""
    parts = max(1, min(jobs, length))
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def map_layer_ranges(routing: Routing, fn: Callable[[Routing], T], jobs: int) -> list[T]:
    """fn(routing cut to a range of MoE layers), for each range in order."""
    return _run(routing, [(_on_layers, fn, lo, hi) for lo, hi in split(routing.n_layers, _jobs(routing, jobs))])


def map_token_ranges(routing: Routing, fn: Callable[[Routing, int, int], T], jobs: int) -> list[T]:
    """fn(routing, start, stop) for each contiguous range of token rows, in order."""
    return _run(routing, [(_on_tokens, fn, a, b) for a, b in split(routing.n_tokens, _jobs(routing, jobs))])


def _jobs(routing: Routing, jobs: int) -> int:
    if routing.expert_ids.size < MIN_PARALLEL_ASSIGNMENTS or not sys.platform.startswith("linux"):
        return 1
    return jobs


def _run(routing: Routing, tasks: list) -> list:
    if len(tasks) == 1:
        how, fn, a, b = tasks[0]
        return [how(routing, fn, a, b)]
    global _shared
    _shared = routing
    try:
        with multiprocessing.get_context("fork").Pool(len(tasks)) as pool:
            return pool.map(_apply, tasks, chunksize=1)
    finally:
        _shared = None


def _apply(task):
    how, fn, a, b = task
    return how(_shared, fn, a, b)


def _on_layers(routing, fn, lo, hi):
    return fn(routing if (lo, hi) == (0, routing.n_layers) else routing.layer_slice(lo, hi))


def _on_tokens(routing, fn, start, stop):
    return fn(routing, start, stop)
