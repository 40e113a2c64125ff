"""Expert cache simulation: how often a GPU cache of C experts per layer would already
hold the experts a token needs, when the experts live in CPU memory (--cpu-moe).

The cache is LRU at token granularity, one cache per MoE layer. Before token t runs a
layer, the cache holds the C most recently used experts; a selected expert found
there is a hit, the others are loaded, evicting the least recently used. Experts used
by the same token are ordered by selection (the first-selected counts as the most
recent), which is what an LRU fed the token's experts last-selected-first would do.

One pass gives the hit rate for every C at once. LRU has the inclusion property: an
access hits in a cache of C experts exactly when its stack distance D — the number
of distinct experts more recent than it (used since its last use, or tied with it
and selected before it) — is below C. So the histogram of D is all that is kept.

D is computed without simulating token by token: with per-token expert bit sets
(uint64 words), D = popcount(OR of the sets of tokens strictly between the last use
and now | the same-token experts selected before it). Window ORs come from a sparse
table (ORs of power-of-two runs; any window is the OR of two overlapping runs). The
trace is cut into chunks of tokens; an expert whose last use was in an earlier chunk
gets its distance from the recency order at the chunk start instead, kept as state.

Next to LRU: the static "hottest C experts" set, chosen with hindsight from the same
tokens — the best any fixed placement could do.
"""
from __future__ import annotations

import numpy as np

from .parallel import map_ranges
from .routing import Routing, compact_dtype
from .tallies import tally

CHUNK_TOKENS = 1 << 13     # tokens per chunk: its sort and tables stay in cache


def stack_distances(routing: Routing, jobs: int = 1) -> np.ndarray:
    """int64 [L, E + 1]: hist[i, d] = accesses at MoE layer i with LRU stack distance d;
    hist[i, E] counts first uses (a miss for any cache size). `jobs` > 1 splits the
    layers among that many processes (parallel.py)."""
    return np.concatenate(map_ranges(_layer_distances, routing.n_layers, jobs, routing, size=routing.expert_ids.size))


def _layer_distances(lo: int, hi: int, routing: Routing) -> np.ndarray:
    return _stack_distances(routing.layer_slice(lo, hi))


def _stack_distances(routing: Routing) -> np.ndarray:
    n, L, k = routing.expert_ids.shape
    E = routing.n_expert
    hist = np.zeros((L, E + 1), np.int64)
    states = [_LayerState(E, k) for _ in range(L)]
    work = _Workspace(min(n, CHUNK_TOKENS), k, E)
    for s in range(0, n, CHUNK_TOKENS):
        # Read the chunk once, narrowed; each layer then takes its contiguous copy.
        chunk = routing.expert_ids[s:s + CHUNK_TOKENS].astype(work.u.dtype)
        for li in range(L):
            u = work.u[:len(chunk)]
            np.copyto(u, chunk[:, li, :])
            hist[li] += _chunk_distances(u, s, E, states[li], work)
    return hist


class _LayerState:
    """What the chunks before this one leave: each expert's last use (token, position
    in that token's selection; token -1 = never used)."""

    def __init__(self, n_expert: int, k: int):
        self.k = k
        self.last_token = np.full(n_expert, -1, np.int64)
        self.last_pos = np.zeros(n_expert, np.int64)

    def recency(self, words: int) -> tuple[np.ndarray, np.ndarray]:
        """rank[e] = experts more recent than e; ahead[w, r] = word w of the bit set of
        the r most recent experts."""
        E = len(self.last_token)
        order = np.argsort(-self.last_token * self.k + self.last_pos, kind="stable")  # never-used sort last
        rank = np.empty(E, np.int64)
        rank[order] = np.arange(E)
        bits = np.zeros((words, E + 1), np.uint64)
        bits[order // 64, np.arange(1, E + 1)] = np.left_shift(np.uint64(1), (order % 64).astype(np.uint64))
        return rank, np.bitwise_or.accumulate(bits, axis=1)


class _Workspace:
    """Buffers every chunk reuses (fresh multi-megabyte temporaries per chunk cost more
    in page faults than the arithmetic), and the sparse-table query by gap g, the
    tokens strictly between two uses: the window is the OR of the run of 2**h tokens
    from pt + 1 and the one ending at t - 1, h = floor(log2 g); as flat indices into
    the table, pt + left[g] and pt + right[g]. Gap 0, an empty window, points at the
    table's last plane, all zeros."""

    def __init__(self, rows: int, k: int, E: int):
        W, A = (E + 63) // 64, rows * k
        self.zero_plane = max(1, (rows - 1).bit_length())
        g = np.arange(rows + 1)
        self.level = np.full(rows + 1, self.zero_plane, np.intp)
        self.level[1:] = np.frexp(g[1:].astype(np.float64))[1] - 1     # exact for integers
        self.rest = np.where(g > 0, g - np.left_shift(1, np.minimum(self.level, 62)), 0).astype(np.intp)
        self.rows = -1
        self.left, self.right = np.empty(rows + 1, np.intp), np.empty(rows + 1, np.intp)
        self.u = np.empty((rows, k), compact_dtype(E))
        self.shifted = np.empty((rows, k), self.u.dtype)
        self.before = np.zeros((rows, k + 1, W), np.uint64)       # position 0 stays 0
        self.table = np.zeros(((self.zero_plane + 1) * rows, W), np.uint64)
        self.bit = np.empty(rows, np.uint64)
        self.expert = np.empty(A, self.u.dtype)
        self.same = np.empty(A, bool)
        self.ints = np.empty((5, A), np.intp)
        self.acc, self.part = np.empty((A, W), np.uint64), np.empty((A, W), np.uint64)
        self.popcount = np.empty((A, W), np.uint8)

    def query_offsets(self, R: int) -> tuple[np.ndarray, np.ndarray]:
        if R != self.rows:       # planes are R long: the last, shorter chunk needs its own
            np.add(self.level * R, 1, out=self.left)
            np.add(self.left, self.rest, out=self.right)
            self.rows = R
        return self.left, self.right


def _chunk_distances(u: np.ndarray, start: int, E: int, state: _LayerState, work: _Workspace) -> np.ndarray:
    R, k = u.shape
    W, A = (E + 63) // 64, R * k
    # Per-token bit sets as W uint64 words (experts 64w .. 64w+63 in word w):
    # before[t, p] = experts selected at positions < p; before[t, k] = all k. Gathers
    # take whole W-word rows (np.take along axis 0), never word by word.
    before = work.before[:R]
    for w in range(W):
        shifted = np.subtract(u, u.dtype.type(64 * w), out=work.shifted[:R]) if w else u
        for p in range(k):
            np.left_shift(np.uint64(1), shifted[:, p], out=work.bit[:R])
            np.bitwise_or(before[:, p, w], work.bit[:R], out=before[:, p + 1, w])
    tok = before[:, k]                                      # [R, W]
    flat = u.reshape(-1)                                    # access a = t * k + p
    order = np.argsort(flat, kind="stable")                 # grouped by expert, in time order
    expert = np.take(flat, order, out=work.expert[:A], mode="clip")
    same = np.equal(expert[1:], expert[:-1], out=work.same[:A - 1])   # sorted access i-1 is the same expert
    hist = np.zeros(E + 2, np.int64)

    # A reuse within the chunk (sorted access i, its previous use i-1): its distance is
    # the popcount of the window strictly between the two uses, OR the experts the
    # earlier token selected before it. Computed for every i, then the pairs that
    # straddle two experts are sent to bin E + 1 and dropped. Gathers use mode="clip",
    # which skips numpy's bounds check (indices are in range by construction, except
    # for those dropped pairs, which clipping keeps harmless).
    if A > 1:
        prev, t, pt, gap = order[:-1], *(x[:A - 1] for x in work.ints[:3])
        _token_of(order[1:], k, t)
        _token_of(prev, k, pt)
        np.subtract(t, pt, out=gap)
        np.subtract(gap, 1, out=gap)
        np.clip(gap, 0, R - 1, out=gap)                    # garbage for straddling pairs only
        table = work.table[:(work.zero_plane + 1) * R]       # plane h = rows h*R .. h*R + R - 1
        _or_table(tok, int(gap.max()).bit_length(), table.reshape(work.zero_plane + 1, R, W))
        left_of, right_of = work.query_offsets(R)
        peer, left, right = t, work.ints[3, :A - 1], work.ints[4, :A - 1]   # t is not needed any more
        np.add(prev, pt, out=peer)                          # = pt * (k + 1) + position: row of before
        np.take(left_of, gap, out=left, mode="clip")
        np.take(right_of, gap, out=right, mode="clip")
        left += pt
        right += pt
        acc, part, pc = work.acc[:A - 1], work.part[:A - 1], work.popcount[:A - 1]
        np.take(before.reshape(-1, W), peer, axis=0, out=acc, mode="clip")
        acc |= np.take(table, left, axis=0, out=part, mode="clip")
        acc |= np.take(table, right, axis=0, out=part, mode="clip")
        np.bitwise_count(acc, out=pc)
        distance = pt
        np.copyto(distance, pc[:, 0])
        for w in range(1, W):
            np.add(distance, pc[:, w], out=distance)
        np.copyto(distance, E + 1, where=~same)
        hist += np.bincount(distance, minlength=E + 2)

    # First use in this chunk: the experts more recent at the chunk start, plus all
    # the chunk used before this token.
    first = np.flatnonzero(np.concatenate([[True], ~same]))
    e = expert[first].astype(np.intp)
    warm = state.last_token[e] >= 0
    hist[E] += int((~warm).sum())
    if warm.any():
        rank, ahead = state.recency(W)
        t = order[first[warm]] // k
        distance = np.zeros(len(t), np.intp)
        so_far = np.zeros((R + 1, W), np.uint64)
        np.bitwise_or.accumulate(tok, axis=0, out=so_far[1:])
        for w in range(W):
            distance += np.bitwise_count(ahead[w, rank[e[warm]]] | so_far[t, w])
        hist[:E + 1] += np.bincount(distance, minlength=E + 1)

    # Each expert's last use in this chunk is the state the next chunk starts from.
    last = np.append(first[1:] - 1, A - 1)
    e_last = expert[last].astype(np.intp)
    state.last_token[e_last] = start + order[last] // k
    state.last_pos[e_last] = order[last] % k
    return hist[:E + 1]


def _token_of(access: np.ndarray, k: int, out: np.ndarray) -> None:
    """Token of each flat access index (t * k + position): a shift when k is a power of 2,
    as it usually is (integer division is several times slower)."""
    if k & (k - 1) == 0:
        np.right_shift(access, k.bit_length() - 1, out=out)
    else:
        np.floor_divide(access, k, out=out)


def _or_table(tok: np.ndarray, levels: int, table: np.ndarray) -> None:
    """Fill table[h, i] = OR of tok[i : i + 2**h] for h < levels (runs that would pass
    the end are shorter; queries never read them), and zeros in the last plane."""
    table[-1] = 0
    if levels:
        table[0] = tok
    for h in range(1, levels):
        half = 1 << (h - 1)
        np.bitwise_or(table[h - 1, :-half], table[h - 1, half:], out=table[h, :-half])
        table[h, -half:] = table[h - 1, -half:]


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
