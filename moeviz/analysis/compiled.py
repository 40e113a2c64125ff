"""The analysis' compiled loops: numba's njit, imported only when a loop is first needed.

Two passes are compiled rather than numpy: the LRU stack pass (expert_cache.py) and
cache-plan's policies (cache_plan.py). Each step of them depends on the state the
previous token left, which numpy can only follow with a Python step per token.

Compiled code goes to numba's disk cache (next to the module, else the user's cache
folder), so it is compiled once per machine and loaded in ~0.1 s after that. Where
no cache folder is writable (a read-only install, a locked-down HOME), numba refuses
cache=True outright; the loops then compile in each process instead of failing.
"""
from __future__ import annotations


def njit(*signatures):
    """Decorator: the function compiled (nogil, no bounds checks: callers pass checked
    arrays), for `signatures` (eagerly) or, without any, on first call."""
    import numba                           # ~0.3 s and ~150 MB: only once a compiled pass runs

    def compile_(fn):
        options = {"nogil": True, "boundscheck": False}
        try:
            return numba.njit(*signatures, cache=True, **options)(fn)
        except RuntimeError as e:          # "cannot cache function ...: no locator available"
            if "cannot cache" not in str(e):
                raise
            return numba.njit(*signatures, **options)(fn)

    return compile_
