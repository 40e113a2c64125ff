"""Parallel decoding against runs alone: shared by tests/test_parallel.py and bench/parallel.py.

`compare(alone, batched, prompts, settings)` records each prompt alone on `alone` (an
Engine with one sequence) and all of them together through a slots.Scheduler on
`batched` (an Engine made with parallel=N), and reports, per prompt, whether tokens,
expert ids and weights agree, and where they first differ, the router's margin there.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from moeviz.engine import Finished, PromptRouted, TokenRouted
from moeviz.engine.slots import Run, Scheduler


@dataclasses.dataclass
class Agreement:
    prompt: str
    same_tokens: bool
    same_ids: bool
    max_weight_diff: float
    first_diff: tuple[int, int] | None   # (token, MoE layer) of the first differing decision
    margin: float | None                 # alone: k-th minus (k+1)-th router probability there
    reason: str
    alone_reason: str


def tokens_of(engine, prompt) -> list[int]:
    return list(prompt) if isinstance(prompt, list) else engine.prompt_tokens(prompt)


def run_alone(engine, prompt, settings, probs=True) -> list:
    return list(engine.generate(tokens_of(engine, prompt), settings, probs=probs))


def run_batched(engine, prompts, settings, probs=True, cancel=None) -> list[list]:
    """Each prompt's events, every prompt admitted as soon as a slot is free.
    `cancel`: {prompt index: threading.Event}."""
    batch = Scheduler(engine)
    events = [[] for _ in prompts]
    waiting = list(range(len(prompts)))
    while waiting or batch.active():
        while waiting and batch.free():
            i = waiting.pop(0)
            batch.add(i, Run(tokens_of(engine, prompts[i]), settings, probs=probs, cancel=(cancel or {}).get(i)))
        for key, ev in batch.step():
            if isinstance(ev, BaseException):
                raise ev
            events[key].append(ev)
    return events


def routing_of(events):
    first = events[0]
    assert isinstance(first, PromptRouted), first
    steps = [e for e in events if isinstance(e, TokenRouted)]
    ids = np.concatenate([first.routing.expert_ids] + [e.routing.expert_ids for e in steps])
    w = np.concatenate([first.routing.weights] + [e.routing.weights for e in steps])
    probs = None
    if first.routing.probs is not None:
        probs = np.concatenate([first.routing.probs] + [e.routing.probs for e in steps])
    tokens = [t.id for t in first.tokens] + [e.token.id for e in steps]
    return tokens, ids, w, probs


def compare(alone, batched, prompts, settings) -> list[Agreement]:
    events = run_batched(batched, prompts, settings)
    out = []
    for p, evs in zip(prompts, events):
        ref_events = run_alone(alone, p, settings)
        ref_tokens, ref_ids, ref_w, ref_probs = routing_of(ref_events)
        tokens, ids, w, _ = routing_of(evs)
        fin = evs[-1]
        assert isinstance(fin, Finished)
        n = min(len(ids), len(ref_ids))
        same = np.sort(ids[:n], -1) == np.sort(ref_ids[:n], -1)
        rows_equal = same.all(-1)                       # [token, layer]
        first = None
        margin = None
        if not rows_equal.all():
            t, layer = map(int, np.argwhere(~rows_equal)[0])
            first = (t, layer)
            k = ref_ids.shape[-1]
            sorted_p = np.sort(ref_probs[t, layer])[::-1]
            margin = float(sorted_p[k - 1] - sorted_p[k]) if k < len(sorted_p) else None
        same_shape = ids.shape == ref_ids.shape
        out.append(Agreement(str(p)[:40], tokens == ref_tokens, bool(same_shape and (ids == ref_ids).all()),
                             float(np.abs(w[:n] - ref_w[:n]).max()), first, margin, fin.reason,
                             ref_events[-1].reason))
    return out
