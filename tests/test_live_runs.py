"""The live list names a run by its prompt and by what it changed, so several what-if runs
of one prompt can be told apart in another page's Compare list (web/js/runname.js's
whatDiffers says it the same way for the page's own runs)."""
from moeviz.server.live import LiveRuns
from moeviz.server.requests import generate_request
from moeviz.server.worker import Job

PROMPTS = {"fib": {"title": "Python: Fibonacci", "text": "def fib(n):"}}


def listed(msg: dict, default_k: int = 4) -> str:
    runs = LiveRuns(default_k=default_k)
    runs.queued(Job(generate_request({"type": "generate", **msg}, PROMPTS), send=lambda *a: None))
    return runs.listing()[0]["title"]


def test_what_if_runs_of_one_prompt_are_named_apart():
    names = [listed({"text": "def fib(n):"}),
             listed({"text": "def fib(n):", "experts_per_token": 1}),
             listed({"text": "def fib(n):", "experts_per_token": 6, "mask": [[0, 1], [2, 3], [4, 5]]}),
             listed({"text": "def fib(n):", "mask": "0:7"}),
             listed({"text": "def fib(n):", "experts_per_token": 4})]     # the server's own top-k: no change
    assert names == ["def fib(n):", "def fib(n): · 1 expert per token",
                     "def fib(n): · 6 experts per token · 3 experts masked", "def fib(n): · 1 expert masked",
                     "def fib(n):"]
    assert len(set(names[:4])) == 4
