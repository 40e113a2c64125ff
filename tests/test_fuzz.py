"""Fuzzing (issue 13): flipped bytes in GGUF and trace files through the CLI, and hostile
websocket messages against a real server. Counted: zero tracebacks, zero signals, zero
connections dropped without a close frame; other clients unaffected."""
import contextlib
import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_cli
from serverproc import ServerProcess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow     # hundreds of CLI runs and connections: minutes (make test, not test-fast)


def fuzz_cli(tmp_path, name, seed, cases, command, source, *args, region=None):
    """Run tests/fuzzcli.py until every case is done; a case that kills it (a signal) is
    counted and skipped. Returns the counts, with 'signal'."""
    report = tmp_path / f"{name}.json"
    signals = []
    extra = ["--region", str(region)] if region else []
    for _ in range(cases + 1):
        r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzzcli.py"), str(seed), str(cases), command,
                            str(source), *map(str, args), *extra, "--report", str(report)],
                           capture_output=True, text=True, timeout=600)
        state = json.loads(report.read_text())
        if r.returncode == 0:
            break
        signals.append((state["progress"] - 1, r.returncode, r.stderr[-800:]))
    counts = {**state["counts"], "signal": len(signals)}
    assert sum(state["counts"].values()) + len(signals) == cases
    assert not state["bad"], state["bad"][:2]
    assert not signals, signals[:2]
    return counts


@pytest.fixture(scope="module")
def traces(fixture_models, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-traces")
    out = {}
    for suffix, probs in ((".moetrace", []), (".json", ["--probs"])):
        path = d / f"run{suffix}"
        run_cli("record", "-m", fixture_models["deepseek2"], "--prompt", "hello world", "--max-tokens", 4, "-o", path,
                *probs, check=True)
        out[suffix] = path
    return out


@pytest.mark.parametrize("suffix", [".moetrace", ".json"])
def test_flipped_trace_bytes_never_crash_the_cli(traces, tmp_path, suffix):
    for command, args in (("stats", ()), ("stats", ("--json",)), ("export", ("-o", "{out}"))):
        counts = fuzz_cli(tmp_path, f"{command}{len(args)}", 13, 150, command, traces[suffix], *args)
        assert counts["error"] > 50 and counts["ok"] > 0, counts        # both outcomes reached


@pytest.mark.parametrize("arch", ["deepseek2", "llama", "gpt-oss"])
def test_flipped_gguf_bytes_never_crash_the_cli(fixture_models, tmp_path, arch):
    """Flips mostly in the header, metadata and tensor table: llama.cpp asserted on some
    (deepseek2.cpp: n_embd_head_qk_nope >= 1; llama-vocab.cpp: a token listed twice) and
    took the process with it (exit 134)."""
    import gguf

    model = fixture_models[arch]
    region = gguf.GGUFReader(model).data_offset
    info = fuzz_cli(tmp_path, "info", 5, 200, "info", model, "--json", region=region)
    assert info["error"] > 50 and info["ok"] > 20, info
    rec = fuzz_cli(tmp_path, "record", 7, 200, "record", model, "-m", "{file}", "--prompt", "hello world",
                   "--max-tokens", 2, "-o", "{out}.json", region=region)
    assert rec["error"] > 50 and rec["ok"] > 20, rec


# --- the websocket -------------------------------------------------------------------------

def hostile_messages(rng: random.Random, n: int):
    """(label, payload, expect) with expect "error", "close" (over the frame limit) or "run"."""
    fields = ["max_tokens", "temperature", "top_p", "top_k", "seed", "probs", "stop", "text", "messages",
              "prompt_name", "experts_per_token", "mask", "candidates", "type"]
    odd = [None, True, False, 0, -1, 2**31, 10**30, -10**30, 1.5, -0.0, 1e308, "", "3", "\ud800", "\u202e\u0000",
           [], [1, 2], {}, {"a": 1}, [[1, 2]], "x" * 5000, [None], ["\udfff"], "NaN"]
    texts = ["\ud83d\ude00 emoji", "\u0000nul", "\u202eRTL", "e\u0301" * 50, "\ud800", "\udbff\udfff", "💥" * 200,
             "<script>alert(1)</script>", "\\u0000", "\r\n\t"]
    for i in range(n):
        kind = i % 10
        if kind == 0:
            yield "bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), "error"
        elif kind == 1:
            opener, deepest = rng.choice([("[", 30000), ('{"a":', 12000), ('{"type":"generate","text":', 2400)])
            yield "nested", opener * rng.choice([50, 500, deepest]), "error"      # all under 64 KiB
        elif kind == 2:
            good = json.dumps({"type": "generate", "text": "hi", "max_tokens": 2})
            yield "truncated", good[: rng.randrange(len(good))], "error"
        elif kind == 3:
            yield "not an object", rng.choice(["1", "null", '"generate"', "[]", "true", "NaN", "-Infinity"]), "error"
        elif kind == 4:
            yield "oversized", json.dumps({"type": "generate", "text": "a" * rng.choice([70_000, 200_000])}), "error"
        elif kind == 5:
            msg = {"type": "generate", "text": "hi", "max_tokens": 1, rng.choice(fields): rng.choice(odd)}
            yield "field", json.dumps(msg), "any"
        elif kind == 6:
            msg = {"type": "generate", "text": rng.choice(texts), "max_tokens": 1, "stop": [rng.choice(texts)]}
            yield "unicode", json.dumps(msg, ensure_ascii=rng.random() < 0.5), "any"
        elif kind == 7:
            msg = {"type": "generate", "max_tokens": 1,
                   "messages": rng.choice([[{"role": "user", "content": rng.choice(texts)}], [{"role": 1}], "hi",
                                           [{"role": "user", "content": "x", "extra": [1] * 10}], [[]]])}
            yield "messages", json.dumps(msg), "any"
        elif kind == 8:
            yield "type", json.dumps({"type": rng.choice(["cancel", "watch", "unwatch", "runs", "GENERATE", "x" * 300,
                                                           "\ud800"]), "run": rng.choice(odd)}), "maybe"
        else:
            yield "frame over the limit", "[" + "0," * 150_000 + "0]", "close"


def sendable(payload):
    """A text frame, or for a string with a lone surrogate (which no UTF-8 text frame can
    carry) its bytes as a binary frame."""
    if isinstance(payload, str):
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:
            return payload.encode("utf-8", "surrogatepass")
    return payload


def answer(ws, expect):
    """What the server did with one hostile message: 'error', 'run' (ended with done), or
    'nothing' (a message that asks for no answer)."""
    got = []
    while True:
        try:
            m = json.loads(ws.recv(timeout=0.5 if expect == "maybe" else 30))
        except TimeoutError:
            return "nothing"
        got.append(m["type"])
        if m["type"] == "error":
            return "error"
        if m["type"] == "done":
            return "run"
        if expect == "maybe" and m["type"] in ("runs", "watching"):
            return "nothing"


def test_websocket_fuzz(fixture_models, tmp_path):
    rng = random.Random(13)
    counts, drops = {}, []
    with ServerProcess("--model", fixture_models["deepseek2"], "--data-dir", tmp_path) as s, \
            contextlib.ExitStack() as stack:
        def fresh():
            ws = stack.enter_context(connect(s.ws_url, max_size=None, max_queue=None, close_timeout=5))
            assert json.loads(ws.recv(timeout=10))["type"] == "model"
            return ws

        ws = fresh()
        for label, payload, expect in hostile_messages(rng, 400):
            try:
                ws.send(sendable(payload))
                outcome = answer(ws, expect)
            except ConnectionClosed as e:
                # a close frame with a reason (1009: over the frame limit) is an answer; a drop is not
                if e.rcvd is None:
                    drops.append((label, payload[:80]))
                outcome = f"close {e.rcvd.code if e.rcvd else None}"
                ws = fresh()
            counts[(label, outcome)] = counts.get((label, outcome), 0) + 1
        ws.close()
        # a good client, after all that and beside it, gets its run
        with connect(s.ws_url, max_queue=None) as good:
            good.recv(timeout=10)
            good.send(json.dumps({"type": "generate", "text": "fine", "max_tokens": 3}))
            while (m := json.loads(good.recv(timeout=30)))["type"] not in ("done", "error"):
                pass
            assert m["type"] == "done"
        out = s.close()
    assert not drops, drops[:5]
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]
    outcomes = {o for (_, o) in counts}
    assert outcomes <= {"error", "run", "nothing", "close 1009"}, counts
    assert counts.get(("frame over the limit", "close 1009")) == 40 and counts.get(("nested", "error")) == 40
    assert sum(counts.values()) == 400


def test_concurrent_hostile_and_good_clients(fixture_models, tmp_path):
    """Ten hostile clients and a good one at once: the good one's runs are whole and in order."""
    with ServerProcess("--model", fixture_models["deepseek2"], "--data-dir", tmp_path) as s:
        stop = threading.Event()

        def hostile(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                try:
                    with connect(s.ws_url, max_size=None, max_queue=None) as ws:
                        for _, payload, expect in hostile_messages(rng, 30):
                            if stop.is_set():
                                break
                            ws.send(sendable(payload))
                            answer(ws, expect)
                except ConnectionClosed:
                    pass

        threads = [threading.Thread(target=hostile, args=(i,), daemon=True) for i in range(10)]
        for t in threads:
            t.start()
        try:
            with connect(s.ws_url, max_queue=None) as good:
                good.recv(timeout=10)
                for r in range(5):
                    good.send(json.dumps({"type": "generate", "text": "a good run", "max_tokens": 6, "seed": r}))
                    msgs = []
                    while not msgs or msgs[-1]["type"] not in ("done", "error"):
                        msgs.append(json.loads(good.recv(timeout=60)))
                    kinds = [m["type"] for m in msgs if m["type"] != "queued"]
                    assert kinds[:2] == ["start", "prompt"] and kinds[-1] == "done", kinds
                    n_prompt = len(msgs[[m["type"] for m in msgs].index("prompt")]["tokens"])
                    idx = [m["index"] for m in msgs if m["type"] == "token"]
                    assert idx == list(range(n_prompt, n_prompt + len(idx)))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        out = s.close()
    assert "Traceback" not in out, out[-3000:]
