"""The websocket protocol as a class (moeviz/server/protocol.py), without an app or a
socket: LiveSessions over a real engine, generation worker and live list, their replies
collected as the transport would send them."""
import json
import threading

import pytest

from moeviz.prompts import load_prompts
from moeviz.server.limits import RateLimiter
from moeviz.server.live import LiveRuns
from moeviz.server.protocol import LiveSession
from moeviz.server.worker import GenerationWorker
from moeviz.trace.store import RunStore


class Inbox:
    """What a session sent, in order (its send is called from the worker thread too)."""

    def __init__(self):
        self.messages = []
        self.cond = threading.Condition()

    def send(self, text, _t_event):
        with self.cond:
            self.messages.append(json.loads(text))
            self.cond.notify_all()

    def until(self, pred, n=1, timeout=60):
        """The messages `pred` holds for, once there are n of them."""
        with self.cond:
            assert self.cond.wait_for(lambda: sum(map(pred, self.messages)) >= n, timeout), self.messages
            return [m for m in self.messages if pred(m)]

    def types(self):
        with self.cond:
            return [m["type"] for m in self.messages]


@pytest.fixture(scope="module")
def world(engines, tmp_path_factory):
    engine = engines("llama", "native")
    live = LiveRuns()
    worker = GenerationWorker(engine, 200, RunStore(tmp_path_factory.mktemp("runs")), live)
    yield worker, live
    worker.stop()


def session(world, **kw):
    worker, live = world
    inbox = Inbox()
    s = LiveSession(worker=worker, live_runs=live, prompts=load_prompts(), max_tokens=300, max_message_bytes=65536,
                    send=inbox.send, **kw)
    return s, inbox


def generate(s, **fields):
    s.handle(json.dumps({"type": "generate", **fields}))


def test_a_run_in_order_and_one_at_a_time(world):
    s, inbox = session(world)
    assert s.idle
    generate(s, text="Once upon a time", max_tokens=5, temperature=0.0)
    generate(s, text="again")                      # refused: the first is still running or just done
    inbox.until(lambda m: m["type"] == "done")
    kinds = [k for k in inbox.types() if k not in ("error", "queued")]
    assert kinds == ["start", "prompt"] + ["token"] * 5 + ["done"]
    errors = [m for m in inbox.messages if m["type"] == "error"]
    assert len(errors) <= 1 and all("already running on this connection" in m["message"] for m in errors)
    assert s.idle and not s.running
    generate(s, text="still usable", max_tokens=2)
    assert inbox.until(lambda m: m["type"] == "done", n=2)[-1]["finish"]["n_generated"] == 2


@pytest.mark.parametrize("raw, message", [
    ("not json", "message is not valid JSON"),
    (json.dumps({"type": "fly"}), "unknown message type 'fly'"),
    (json.dumps({"type": "generate", "text": "hi", "max_tokens": 301}), "over this server's limit of 300"),
    (json.dumps({"type": "watch", "run": "nope"}), "no live run 'nope'"),
])
def test_bad_messages_get_one_error(world, raw, message):
    s, inbox = session(world)
    s.handle(raw)
    assert inbox.types() == ["error"] and message in inbox.messages[0]["message"]


def test_watching_another_sessions_run_gets_its_messages(world):
    a, a_in = session(world)
    b, b_in = session(world)
    b.handle(json.dumps({"type": "runs"}))
    generate(a, text="Once upon a time", max_tokens=40, temperature=0.0)
    listed = b_in.until(lambda m: m["type"] == "runs" and any(r["status"] == "running" for r in m["runs"]))
    run_id = next(r["run"] for r in listed[-1]["runs"] if r["status"] == "running")
    b.handle(json.dumps({"type": "watch", "run": run_id}))
    a_in.until(lambda m: m["type"] == "done")
    b_in.until(lambda m: m["type"] == "done")
    watched = [m for m in b_in.messages if m["type"] not in ("runs", "watching")]
    own = [m for m in a_in.messages if m["type"] != "queued"]
    assert {"type": "watching", "run": run_id} in b_in.messages
    assert watched and watched == own[-len(watched):] and watched[-1]["type"] == "done"
    assert not b.running and b.viewer.watching is None      # the run is over: the watcher let go
    b.close()


def test_cancel_and_close_end_the_run(world):
    s, inbox = session(world)
    generate(s, text="Once upon a time", max_tokens=300, temperature=0.0)
    inbox.until(lambda m: m["type"] == "start")
    s.handle(json.dumps({"type": "cancel"}))
    assert inbox.until(lambda m: m["type"] == "done")[0]["finish"]["reason"] in ("cancelled", "eos")
    generate(s, text="Once upon a time", max_tokens=300, temperature=0.0)
    inbox.until(lambda m: m["type"] == "start", n=2)
    s.close()                                     # the connection ends: its run is cancelled
    assert s.job.done.wait(30)
    assert inbox.until(lambda m: m["type"] == "done", n=2)[-1]["finish"]["reason"] in ("cancelled", "eos")


def test_the_rate_limit_is_one_error_line(world):
    s, inbox = session(world, limiter=RateLimiter(1), client="10.0.0.1")
    generate(s, text="one", max_tokens=1)
    inbox.until(lambda m: m["type"] == "done")
    generate(s, text="two", max_tokens=1)
    err = inbox.until(lambda m: m["type"] == "error")
    assert "rate limit: 1 generations a minute" in err[0]["message"]
