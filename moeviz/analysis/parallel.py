"""Parallel passes for long traces, in forked worker processes.

The tally pass (tallies.py) can be cut anywhere along the tokens: each worker takes a
contiguous range of token rows and the partial tallies add up. The LRU simulation
(expert_cache.py) runs along the tokens, but every MoE layer's cache is independent,
so it is cut along the layers, as are the per-layer loops with shuffled baselines
(tokens.py, locality.py). Workers are forked: they see the trace's arrays (and the
parent's cached tallies) without a copy (copy-on-write, and nothing writes them) and
send back only their results. Threads would not do: much of each pass is short numpy
calls that hold the GIL (measured on 2 cores with the numpy LRU pass expert_cache.py
had before its compiled one: 2 threads 1.2x, 2 processes 1.7-2.0x).

Used only when asked (`jobs` > 1, which `moeviz stats` does by default) and only for
traces big enough to pay for starting processes; only on Linux, where forking a
process that has run numpy is safe (macOS's system libraries are not fork-safe,
Windows cannot fork): elsewhere the work runs in this process. Results never depend
on `jobs`: whatever is random (shuffles) is drawn before the work is split.
"""
from __future__ import annotations

import multiprocessing
import sys
from typing import Callable, TypeVar

MIN_PARALLEL_ASSIGNMENTS = 1 << 22    # below ~4M (token, layer, k) entries one process is as fast
T = TypeVar("T")

_shared: tuple = ()                   # what the forked workers read: the caller's arguments


def split(length: int, jobs: int) -> list[tuple[int, int]]:
    """`jobs` (at most `length`) contiguous ranges of nearly equal size covering 0..length-1."""
    parts = max(1, min(jobs, length))
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def map_ranges(fn: Callable[..., T], length: int, jobs: int, *shared, size: int) -> list[T]:
    """[fn(a, b, *shared) for each contiguous range a..b-1 of 0..length-1], in order;
    `size` is the work's number of expert assignments. `fn` must be a module-level
    function (it is sent to the workers by name); `shared` is inherited, not sent."""
    if size < MIN_PARALLEL_ASSIGNMENTS or not sys.platform.startswith("linux"):
        jobs = 1
    ranges = split(length, jobs)
    if len(ranges) == 1:
        return [fn(*ranges[0], *shared)]
    global _shared
    _shared = shared
    try:
        with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
            return pool.starmap(_apply, [(fn, a, b) for a, b in ranges], chunksize=1)
    finally:
        _shared = ()


def _apply(fn, a, b):
    return fn(a, b, *_shared)
