"""Expert cache plans scored on held-out traces (`moeviz cache-plan`, docs/analysis.md).

The model: one cache of N experts per MoE layer (the GPU's copy, the rest in CPU
memory). Tokens run in trace order, the training traces first, then the test traces,
as one stream (a server's cache carries over from one request to the next). At each
token and layer the k selected experts are accessed together: those in the cache hit;
the others are loaded, each evicting a cached expert the same token does not use.
Only the test traces are scored: hit rate = hits / accesses, over all layers.

Policies (the training traces warm every cache first; only `static` and `lrfu` learn
anything else from them):
  lru     evict the least recently used; among the experts of one token, the
          first-selected counts as the most recent (the order the stack curve of
          `moeviz stats` uses, expert_cache.py)
  lfu     evict the least often used so far (training and test tokens seen), ties
          to the least recently used
  lrfu    Lee et al.'s LRFU: each access adds 1 to a score that halves every 1/lambda
          tokens; evict the lowest score (ties to the least recently used). lambda = 0
          is LFU, lambda >= 1 orders by last use as LRU does (experts last used by
          the same token by their history instead of their position); it is chosen from LAMBDAS by the hit rate on the
          training traces, so the policy adapts between the two to the workload
  static  the N experts per layer most often selected in the training traces (ties to
          the lower id), loaded once and never changed: what a fixed placement gives
  belady  the offline bound: after each token, keep the N experts of (cache + the
          token's) used soonest in the future, starting from the N used soonest. It
          may leave a missed expert out (bypass), as static does with every miss, so
          no policy here can beat it (MIN with bypass keeps the soonest-needed items;
          the usual exchange argument).

Budget: N experts per layer, at least k (a token's experts must fit) and at most E.

Besides the policies, prefetch figures over the test tokens: the share of a token's
experts that the previous token used, that one of the last w tokens used, and that
the previous MoE layer's experts predict (top-k of the co-occurrence counts of the
training traces between consecutive layers).

The policies run token by token in compiled loops (numba): O(E) work per eviction;
4,000 training + 4,000 test tokens x 48 layers x top-8 of 128 take 3.5 s in all (17 s
as numpy per token), half of it LRFU's lambda search.
"""
from __future__ import annotations

import functools

import numpy as np

from .compiled import njit
from .routing import AnalysisError, Routing, same_model

POLICIES = ("lru", "lfu", "lrfu", "static", "belady")
ONLINE = ("lru", "lfu", "lrfu")           # simulate()'s policies, numbered for the compiled loop
LAMBDAS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
PREFETCH_WINDOWS = (1, 2, 4, 8, 16, 32)
_CHUNK = 4096           # test tokens per step of the layer-prediction figure


def _stream(routings: list[Routing]) -> np.ndarray:
    """[n, L, k] int64: the routings' expert ids one after the other."""
    return np.concatenate([np.asarray(r.expert_ids, np.int64) for r in routings]) if routings \
        else np.zeros((0, 0, 0), np.int64)


def check_budget(budget: int, k: int, E: int) -> int:
    if budget < k:
        raise AnalysisError(f"a cache of {budget} experts per layer cannot hold one token's {k} experts; "
                            f"--budget must be at least {k}")
    return min(budget, E)


def simulate(ids: np.ndarray, E: int, budget: int, policy: str, *, scored_from: int = 0,
             lam: float = 0.0) -> np.ndarray:
    """Hits per MoE layer (int64 [L]) of an online `policy` (lru, lfu, lrfu) over the token
    stream `ids` [n, L, k], counting tokens from `scored_from` on; the cache starts empty."""
    hits = np.zeros(ids.shape[1], np.int64)
    _kernels()[0](np.asarray(ids, np.int64), E, budget, ONLINE.index(policy), scored_from, lam, hits)
    return hits


def next_uses(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nxt [n, L, k], prev [n, L, k]): per access, the next token using the same expert
    in the same layer (n if none) and the previous one (-1 if none)."""
    n, L, k = ids.shape
    nxt = np.full((n, L, k), n, np.int64)
    prev = np.full((n, L, k), -1, np.int64)
    t = np.repeat(np.arange(n), k)
    for li in range(L):
        e = ids[:, li].reshape(-1)
        order = np.lexsort((t, e))
        same = e[order][1:] == e[order][:-1]
        nl, pl = nxt[:, li].reshape(-1), prev[:, li].reshape(-1)
        nl[order[:-1][same]] = t[order[1:][same]]
        pl[order[1:][same]] = t[order[:-1][same]]
        nxt[:, li], prev[:, li] = nl.reshape(n, k), pl.reshape(n, k)
    return nxt, prev


def belady(ids: np.ndarray, E: int, budget: int) -> np.ndarray:
    """Hits per MoE layer of the offline bound (module doc) over `ids` [n, L, k]."""
    ids = np.asarray(ids, np.int64)
    hits = np.zeros(ids.shape[1], np.int64)
    _kernels()[1](ids, next_uses(ids)[0], E, budget, hits)
    return hits


@functools.cache
def _kernels():
    """The policies' token loops, compiled (numba, cached on disk): each step depends on
    the cache the previous token left, which numpy can only follow a token at a time
    (a Python step per token). A cache is a bool per expert; an
    eviction takes the candidate with the smallest key (largest for Belady) in one scan
    over E, `over` times: the keys do not change while a token evicts, so this removes
    the same experts as sorting them once."""
    @njit()
    def online(ids, E, budget, policy, scored_from, lam, hits):
        n, L, k = ids.shape
        for li in range(L):
            cache = np.zeros(E, np.bool_)
            token = np.full(E, -1, np.int64)            # the last token to use each expert
            stamp = np.full(E, -1, np.int64)            # last use: t * k + (k - 1 - position)
            count = np.zeros(E, np.int64)
            crf = np.full(E, -np.inf)                   # log2 of the LRFU score times 2**(lam * t)
            size = 0
            for t in range(n):
                if t >= scored_from:
                    for p in range(k):
                        hits[li] += cache[ids[t, li, p]]
                for p in range(k):
                    e = ids[t, li, p]
                    stamp[e] = t * k + (k - 1 - p)
                    token[e] = t
                    if policy == 1:
                        count[e] += 1
                    elif policy == 2:
                        crf[e] = np.logaddexp2(crf[e], lam * t)
                    if not cache[e]:
                        cache[e] = True
                        size += 1
                while size > budget:                    # evict a cached expert this token does not use
                    out = -1
                    for x in range(E):
                        if cache[x] and token[x] != t:
                            if out < 0:
                                out = x
                            elif policy == 0:
                                if stamp[x] < stamp[out]:
                                    out = x
                            else:
                                a = count[x] if policy == 1 else crf[x]
                                b = count[out] if policy == 1 else crf[out]
                                if a < b or (a == b and stamp[x] < stamp[out]):
                                    out = x
                    cache[out] = False
                    size -= 1

    @njit()
    def belady_pass(ids, after, E, budget, hits):
        n, L, k = ids.shape
        for li in range(L):
            soon = np.full(E, n, np.int64)              # next use of each expert from the current token on
            for t in range(n - 1, -1, -1):
                for p in range(k):
                    soon[ids[t, li, p]] = t
            cache = np.zeros(E, np.bool_)
            for e in np.argsort(soon * E + np.arange(E))[:budget]:     # keys are distinct
                cache[e] = True
            size = budget
            for t in range(n):
                for p in range(k):
                    hits[li] += cache[ids[t, li, p]]
                for p in range(k):
                    e = ids[t, li, p]
                    soon[e] = after[t, li, p]
                    if not cache[e]:
                        cache[e] = True
                        size += 1
                while size > budget:                    # evict the one used last (never again first), ties to the higher id
                    out, key = -1, -1
                    for x in range(E):
                        if cache[x] and soon[x] * E + x > key:
                            out, key = x, soon[x] * E + x
                    cache[out] = False
                    size -= 1

    return online, belady_pass


def static_set(train: np.ndarray, E: int, budget: int) -> np.ndarray:
    """bool [L, E]: the `budget` experts per layer most often selected in `train`, ties to the lower id."""
    _, L, _ = train.shape
    counts = np.stack([np.bincount(train[:, li].reshape(-1), minlength=E) for li in range(L)])
    top = np.argsort(-counts, axis=1, kind="stable")[:, :budget]
    chosen = np.zeros((L, E), bool)
    chosen[np.arange(L)[:, None], top] = True
    return chosen


def best_lambda(train: np.ndarray, E: int, budget: int) -> float:
    """The LRFU lambda of LAMBDAS with the most hits on the training stream (the first on a tie)."""
    scores = [int(simulate(train, E, budget, "lrfu", lam=lam).sum()) for lam in LAMBDAS]
    return LAMBDAS[int(np.argmax(scores))]


def prefetch_figures(train: np.ndarray, test: np.ndarray, E: int) -> dict:
    """Shares of the test tokens' expert selections a prefetcher could have known."""
    n, L, k = test.shape
    _, prev = next_uses(test)
    later = prev[1:]                           # tokens after the first
    gap = np.where(later >= 0, np.arange(1, n)[:, None, None] - later, np.iinfo(np.int64).max)
    within = {w: float((gap <= w).mean()) if n > 1 else None for w in PREFETCH_WINDOWS}
    out = {"previous_token": within[1], "within_last": within, "previous_layer": None, "previous_layer_per_layer": []}
    if L > 1 and len(train):
        hits, per_layer = 0, []
        for li in range(1, L):
            # co-occurrence of layer li-1's experts with layer li's over the training tokens
            a = train[:, li - 1][:, :, None] * E + train[:, li][:, None, :]
            cooc = np.bincount(a.reshape(-1), minlength=E * E).reshape(E, E)
            layer_hits = 0
            for s in range(0, n, _CHUNK):
                score = cooc[test[s:s + _CHUNK, li - 1]].sum(axis=1)              # [m, E]
                pred = np.argsort(-score, axis=1, kind="stable")[:, :k]
                layer_hits += int((pred[:, :, None] == test[s:s + _CHUNK, li][:, None, :]).any(axis=2).sum())
            per_layer.append(layer_hits / (n * k))
            hits += layer_hits
        out["previous_layer"] = hits / (n * k * (L - 1))
        out["previous_layer_per_layer"] = per_layer
    return out


def cache_plan(train: list[Routing], test: list[Routing], budget: int) -> dict:
    """Every policy's hit rate on `test` with `budget` experts cached per MoE layer (module doc)."""
    if not train or not test:
        raise AnalysisError("cache-plan needs training traces (--train) and test traces (--test)")
    same_model([*train, *test])
    ref = test[0]
    E = ref.n_expert
    ks = {r.k for r in [*train, *test]}
    if len(ks) > 1:
        raise AnalysisError(f"the traces route different numbers of experts per token ({sorted(ks)}): "
                            "record them with the same top-k")
    k = ks.pop()
    N = check_budget(budget, k, E)
    tr, te = _stream(train), _stream(test)
    stream = np.concatenate([tr, te])
    accesses = te.shape[0] * k                 # per layer
    lam = best_lambda(tr, E, N)
    per_layer = {
        "lru": simulate(stream, E, N, "lru", scored_from=len(tr)),
        "lfu": simulate(stream, E, N, "lfu", scored_from=len(tr)),
        "lrfu": simulate(stream, E, N, "lrfu", scored_from=len(tr), lam=lam),
        "static": static_set(tr, E, N)[np.arange(te.shape[1])[None, :, None], te].sum(axis=(0, 2)),
        "belady": belady(te, E, N),
    }
    policies = {name: {"hit_rate": float(h.sum() / (accesses * len(h))), "per_layer": (h / accesses).tolist()}
                for name, h in per_layer.items()}
    policies["lrfu"]["lambda"] = lam
    online = max(("lru", "lfu", "lrfu", "static"), key=lambda p: policies[p]["hit_rate"])
    return {"budget": N, "k": k, "n_expert": E, "moe_layers": ref.moe_layers,
            "tokens": {"train": int(tr.shape[0]), "test": int(te.shape[0])},
            "policies": policies, "recommendation": online, "prefetch": prefetch_figures(tr, te, E)}
