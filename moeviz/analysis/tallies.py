"""One pass over the routing arrays that collects what most metrics are computed from.

A million-token trace of a 48-layer top-8 model holds 384M expert assignments, so
the arrays are read once, in chunks of about a million assignments, and each
chunk's expert ids are narrowed to uint8/uint16 first. Every temporary lives in a
buffer allocated once and reused through `out=`: a fresh multi-megabyte array per
chunk costs page faults that, on small virtual machines, take longer than the
arithmetic. Operations run over whole chunks with long inner loops (a broadcast
over the short k axis would make numpy loop 8 elements at a time).

Collected per MoE layer (index i on the layer axis, E experts, S_t = token t's top-k set):
  counts[i, e]        tokens whose top-k at layer i includes expert e
  first_use[i, e]     row of the first such token (-1: never selected)
  top1[t, i]          the expert with the largest gate weight (the first one on a tie)
  top1_counts[i, e]   tokens whose top-1 is e
  overlap[i]          sum over consecutive tokens of |S_t ∩ S_t+1|
  transitions[i]      [E, E] counts of top-1 a at layer i with top-1 b at layer i+1
                      (built on first use: E^2 per layer pair, work that a trace's data does
                      not bound, so nothing in `moeviz stats` asks for it; layer_transitions does)
"""
from __future__ import annotations

import dataclasses
import functools
import weakref

import numpy as np

from .parallel import map_ranges
from .routing import Routing, compact_dtype

CHUNK_ASSIGNMENTS = 1 << 20       # assignments (token rows x layers x k) per chunk


@dataclasses.dataclass
class Tallies:
    counts: np.ndarray        # int64 [L, E]
    first_use: np.ndarray     # int64 [L, E], -1 where never selected
    top1_by_layer: np.ndarray  # [L, n], smallest unsigned dtype holding n_expert - 1
    top1_counts: np.ndarray   # int64 [L, E]
    overlap: np.ndarray       # int64 [L]
    n_expert: int

    @functools.cached_property
    def transitions(self) -> np.ndarray:
        """int32 [L-1, E, E], computed when first asked for."""
        return _transitions(self.top1_by_layer, self.n_expert)

    @property
    def top1(self) -> np.ndarray:
        """[n, L] view: top-1 expert per token and MoE layer."""
        return self.top1_by_layer.T


_cache: "weakref.WeakKeyDictionary[Routing, Tallies]" = weakref.WeakKeyDictionary()


def tally(routing: Routing, jobs: int = 1) -> Tallies:
    """The shared per-layer tallies of `routing` (computed once per Routing, then
    cached); `jobs` > 1 splits the tokens among that many processes (parallel.py)."""
    if routing not in _cache:
        parts = map_ranges(_tally_rows, routing.n_tokens, jobs, routing, size=routing.expert_ids.size)
        _cache[routing] = parts[0] if len(parts) == 1 else _merge(parts)
    return _cache[routing]


def _merge(parts: list[Tallies]) -> Tallies:
    """Tallies of consecutive token ranges as one. Each range after the first also
    counted its overlap with the row before it, so sums are exact."""
    first = parts[0].first_use.copy()
    for p in parts[1:]:
        np.copyto(first, p.first_use, where=first < 0)
    return Tallies(counts=sum(p.counts for p in parts), first_use=first,
                   top1_by_layer=np.concatenate([p.top1_by_layer for p in parts], axis=1),
                   top1_counts=sum(p.top1_counts for p in parts), overlap=sum(p.overlap for p in parts),
                   n_expert=parts[0].n_expert)


class _Buffers:
    def __init__(self, rows: int, L: int, k: int, udt: np.dtype):
        self.u = np.empty((rows + 1, L, k), udt)         # narrowed ids, plus the row before the chunk
        self.codes = np.empty(rows * L * k, np.intp)     # bincount takes intp without copying
        self.descending = np.empty(rows * L * k, bool)
        self.planes = np.empty((k, rows + 1, L), udt)    # the chunk's ids, one contiguous plane per position
        self.hit = np.empty((rows, L), bool)
        self.eq = np.empty((rows, L), bool)
        self.shared = np.empty((rows, L), np.uint8)      # |S_t ∩ S_t-1| per row


def _tally_rows(start: int, stop: int, routing: Routing) -> Tallies:
    return _tally(routing, start, stop)


def _tally(routing: Routing, start: int = 0, stop: int | None = None) -> Tallies:
    """Tallies of token rows start..stop-1 (token indices stay absolute); a range that
    starts after row 0 includes the overlap of its first row with the row before."""
    ids, weights = routing.expert_ids, routing.weights
    _, L, k = ids.shape
    n = ids.shape[0] if stop is None else stop
    E = routing.n_expert
    rows = max(1, min(n - start, CHUNK_ASSIGNMENTS // (L * k)))
    buf = _Buffers(rows, L, k, compact_dtype(E))
    layer_code = np.repeat(np.arange(L, dtype=np.intp) * E, k)   # (layer, expert) -> one bin, per column
    # A gate-weight row is descending when each weight is >= the next; comparisons
    # that straddle two rows are masked out by `row_end`.
    row_end = (np.arange(rows * L * k) % k) == k - 1
    counts = np.zeros(L * E, np.int64)
    first = np.full(L * E, -1, np.int64)
    overlap = np.zeros(L, np.int64)
    top1 = np.empty((L, n - start), buf.u.dtype)
    for s in range(start, n, rows):
        e = min(s + rows, n)
        lo = s - 1 if s > 0 else s          # the row before: its pair with row s belongs to this chunk
        u_all = buf.u[:e - lo]
        np.copyto(u_all, ids[lo:e], casting="unsafe")
        u = u_all[s - lo:]
        codes = buf.codes[:u.size]
        np.add(u.reshape(e - s, L * k), layer_code, out=codes.reshape(e - s, L * k))
        c = np.bincount(codes, minlength=L * E)
        new = (c > 0) & (first < 0)
        if new.any():
            pos = np.flatnonzero(new[codes])
            found, at = np.unique(codes[pos], return_index=True)  # first occurrence of each new code
            first[found] = s + pos[at] // (L * k)
        counts += c
        top1[:, s - start:e - start] = _top1(u, weights[s:e], row_end, buf).T
        if e - lo >= 2:
            overlap += _consecutive_overlap(u_all, buf)
    return Tallies(counts=counts.reshape(L, E), first_use=first.reshape(L, E), top1_by_layer=top1,
                   top1_counts=_top1_counts(top1, E), overlap=overlap, n_expert=E)


def _top1(u: np.ndarray, w: np.ndarray, row_end: np.ndarray, buf: _Buffers) -> np.ndarray:
    """Expert with the largest weight per (token, layer). llama.cpp lists the selected
    experts by descending score, which for softmax gating is descending weight, so
    most chunks only need the check; others (biased sigmoid gating) take argmax."""
    if u.shape[2] == 1:
        return u[..., 0]
    wf = w.reshape(-1)
    descending = buf.descending[:wf.size - 1]
    np.greater_equal(wf[:-1], wf[1:], out=descending)
    descending |= row_end[:descending.size]
    if descending.all():
        return u[..., 0]
    pos = np.argmax(w, axis=-1)
    return np.take_along_axis(u, pos[..., None], axis=-1)[..., 0]


def _consecutive_overlap(u: np.ndarray, buf: _Buffers) -> np.ndarray:
    """Per layer, sum over consecutive rows of |S_t ∩ S_t+1| (u is [R, L, k]). A token's
    k experts are distinct, so the count is the number of its experts found among the
    previous row's: k x k comparisons of contiguous uint8/uint16 planes, which numpy
    runs with SIMD (measured 1.5-4x faster than bit sets and popcounts)."""
    R, _, k = u.shape
    planes = buf.planes[:, :R]
    np.copyto(planes, u.transpose(2, 0, 1))
    hit, eq, shared = buf.hit[:R - 1], buf.eq[:R - 1], buf.shared[:R - 1]
    shared[:] = 0
    for i in range(k):
        now = planes[i, 1:]
        np.equal(now, planes[0, :-1], out=hit)
        for j in range(1, k):
            np.equal(now, planes[j, :-1], out=eq)
            np.logical_or(hit, eq, out=hit)
        np.add(shared, hit, out=shared, casting="unsafe")
    return shared.sum(axis=0, dtype=np.int64)


def _transitions(top1: np.ndarray, E: int) -> np.ndarray:
    """[L-1, E, E]: tokens with top-1 a at MoE layer i and top-1 b at layer i+1."""
    L, n = top1.shape
    out = np.zeros((max(L - 1, 0), E, E), np.int32)    # a count never exceeds n tokens
    code = np.empty(n, np.intp)
    for i in range(L - 1):
        np.multiply(top1[i], np.intp(E), out=code)
        code += top1[i + 1]
        out[i] = np.bincount(code, minlength=E * E).reshape(E, E)
    return out


def _top1_counts(top1: np.ndarray, E: int) -> np.ndarray:
    """Top-1 tallies per layer [L, E]."""
    out = np.zeros((top1.shape[0], E), np.int64)
    for i, row in enumerate(top1):
        out[i] = np.bincount(row, minlength=E)
    return out
