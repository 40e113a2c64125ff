"""Expert cache simulation: how often a GPU cache of C experts per layer would already
hold the experts a token needs, when the experts live in CPU memory (--cpu-moe).

The cache is LRU at token granularity, one cache per MoE layer. Before token t runs a
layer, the cache holds the C most recently used experts; a selected expert found
there is a hit, the others are loaded, evicting the least recently used. Experts used
by the same token are ordered by selection (the first-selected counts as the most
recent), which is what an LRU fed the token's experts last-selected-first would do.

One pass gives the hit rate for every C at once (Mattson et al.'s stack algorithm):
LRU has the inclusion property, so an access hits in a cache of C experts exactly
when its stack distance D, the number of distinct experts more recent than it, is
below C. Only the histogram of D is kept.

The pass keeps each layer's LRU stack as ranks: rank[e] = D of expert e now. With E
at most a few hundred, moving a token's k experts to the top is one sweep over E
small integers: every expert gains one place for each of the token's experts that
was below it, the token's experts take places 0..k-1. That sweep is k compares per
expert, which a compiler turns into a few vector instructions per 32 experts, so
the pass costs a few nanoseconds per access. numpy cannot express it without a
Python step per token, so it is compiled (numba, once per k, cached on disk). The
bit-set and sparse-table formulation it replaced was pure numpy and 5x slower. Small
traces take the same sweep in numpy, a step per token over all layers at once: for
them that is faster than importing numba.

Next to LRU: the static "hottest C experts" set, chosen with hindsight from the same
tokens, the best any fixed placement could do.
"""
from __future__ import annotations

import functools

import numpy as np

from .compiled import njit
from .parallel import map_ranges
from .routing import AnalysisError, Routing
from .tallies import tally


SMALL_SWEEP = 1 << 25   # n * L * k * E up to this: numpy, a step per token (< ~0.2 s), not numba (~0.4 s to load)


def stack_distances(routing: Routing, jobs: int = 1) -> np.ndarray:
    """int64 [L, E + 1]: hist[i, d] = accesses at MoE layer i with LRU stack distance d;
    hist[i, E] counts first uses (a miss for any cache size). `jobs` > 1 splits the
    layers among that many processes (parallel.py)."""
    E = routing.n_expert
    if E > 1 << 16:
        raise AnalysisError(f"{routing.name}: the cache simulation takes at most 65,536 experts per layer, not {E:,}")
    if routing.expert_ids.size * E > SMALL_SWEEP:
        _kernel(routing.k)                 # compiled (or loaded) here, not in every worker
    return np.concatenate(map_ranges(_layer_distances, routing.n_layers, jobs, routing, size=routing.expert_ids.size))


def _layer_distances(lo: int, hi: int, routing: Routing) -> np.ndarray:
    ids = np.asarray(routing.expert_ids, np.int32)[:, lo:hi]     # a view of a trace's int32 array
    n, L, k = ids.shape
    E = routing.n_expert
    small = ids.size * E <= SMALL_SWEEP    # per layer range: both passes give the same numbers
    bad = _repeated(ids) if small else _kernel(k)[0](ids)
    if bad >= 0:
        t, i = divmod(int(bad), L)
        raise AnalysisError(f"{routing.name}: token {t} selects one expert twice at MoE layer "
                            f"{routing.moe_layers[lo + i]} ({ids[t, i].tolist()})")
    if small:
        return _stack_pass(ids, E)
    ranks = np.tile(np.arange(E, dtype=np.uint8 if E <= 256 else np.uint16), (L, 1))
    hist = np.zeros((L, E + 1), np.int64)
    _kernel(k)[1](ids, ranks, hist)
    return hist


def _repeated(ids: np.ndarray) -> int:
    """numpy's `repeated` (below) for small traces."""
    ordered = np.sort(ids, axis=2)
    twice = np.flatnonzero((ordered[:, :, 1:] == ordered[:, :, :-1]).any(axis=2))
    return int(twice[0]) if twice.size else -1


def _stack_pass(ids: np.ndarray, E: int) -> np.ndarray:
    """The compiled `stack_pass` (below) in numpy, all layers at once a token at a time:
    what small traces use, since it costs less than loading numba."""
    n, L, k = ids.shape
    rows = np.arange(L)[:, None]
    rank = np.tile(np.arange(E), (L, 1))
    used = np.zeros(L, np.int64)
    hist = np.zeros((L, E + 1), np.int64)
    for t in range(n):
        chosen = ids[t]
        before = rank[rows, chosen]
        fresh = before >= used[:, None]
        hist[rows, before] += ~fresh      # a row's ranks are distinct: no index repeats
        used += fresh.sum(axis=1)
        rank += (rank[:, :, None] < before[:, None, :]).sum(axis=2)
        rank[rows, chosen] = np.arange(k)
    hist[:, E] = used
    return hist


@functools.cache
def _kernel(k: int):
    """The stack pass for traces with k experts per token, and the check it relies on
    (a token's experts are distinct). k is a compile-time constant (numba freezes the
    closure's k, and its disk cache keys on it), so the k compares per expert of the
    sweep unroll and the sweep over experts vectorizes."""
    import numba

    ids_type = numba.int32[:, :, :]

    @njit([numba.int64(ids_type)])
    def repeated(ids):
        """-1, or t * L + layer of the first token that selects an expert twice (the
        ranks below would stop being a permutation). A pass of its own: inside the
        stack pass the check costs three times as much."""
        n, L, _ = ids.shape
        for t in range(n):
            for i in range(L):
                distinct = True
                for p in range(1, k):
                    e = ids[t, i, p]
                    for q in range(p):
                        distinct &= ids[t, i, q] != e
                if not distinct:
                    return t * L + i
        return -1

    @njit([numba.void(ids_type, numba.types.Array(rank, 2, "C"), numba.int64[:, ::1])
           for rank in (numba.uint8, numba.uint16)])
    def stack_pass(ids, ranks, hist):
        """ids [n, L, k], a token's experts distinct; ranks [L, E], each row a
        permutation of 0..E-1 (the stack: experts never used sit below the used ones,
        in any order, so a first use is a rank >= the number used so far); hist
        [L, E + 1] += the distances, first uses in column E."""
        n, L, _ = ids.shape
        E = ranks.shape[1]
        used = np.zeros(L, np.int64)
        before = np.zeros(k, ranks.dtype)
        for t in range(n):
            for i in range(L):
                rank = ranks[i]
                fresh = used[i]
                for p in range(k):
                    r = rank[ids[t, i, p]]
                    before[p] = r
                    if r >= fresh:
                        used[i] += 1
                    else:
                        hist[i, r] += 1
                for x in range(E):          # the sweep: one place down per token expert that was below
                    v = rank[x]
                    down = v
                    for p in range(k):
                        down += v < before[p]
                    rank[x] = down
                for p in range(k):
                    rank[ids[t, i, p]] = p
        for i in range(L):
            hist[i, E] += used[i]

    return repeated, stack_pass


def cache_hit_rates(routing: Routing, capacities=None, jobs: int = 1) -> dict:
    """LRU and static-hottest-set hit rates per layer and overall, for each cache size C
    (default 1..E experts per layer). `compulsory_miss` = first uses, a floor for any cache."""
    E = routing.n_expert
    caps = np.arange(1, E + 1) if capacities is None else np.asarray(sorted(set(int(c) for c in capacities)))
    if caps.size == 0 or caps.min() < 1:
        raise ValueError("cache sizes must be at least 1 expert")
    hist = stack_distances(routing, jobs)
    accesses = hist.sum(axis=1)
    below = np.concatenate([np.zeros((len(hist), 1), np.int64), np.cumsum(hist[:, :E], axis=1)], axis=1)
    lru_hits = below[:, np.minimum(caps, E)]                       # hits = accesses with D < C
    counts = np.sort(tally(routing).counts, axis=1)[:, ::-1]
    hottest = np.concatenate([np.zeros((len(counts), 1), np.int64), np.cumsum(counts, axis=1)], axis=1)
    static_hits = hottest[:, np.minimum(caps, E)]
    return {"moe_layers": routing.moe_layers, "capacities": caps,
            "lru": lru_hits / accesses[:, None], "static": static_hits / accesses[:, None],
            "lru_overall": lru_hits.sum(axis=0) / accesses.sum(),
            "static_overall": static_hits.sum(axis=0) / accesses.sum(),
            "compulsory_miss": hist[:, E].sum() / accesses.sum(), "stack_distance_histogram": hist}
