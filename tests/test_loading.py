"""Model load you can watch: llama.cpp's progress callback through Engine, the CLI's
progress on stderr, and `moeviz serve` answering while its model loads.

A real load is held where a test wants it by the progress callback itself (llama.cpp
calls it from its tensor-loading loop; the test's wrapper around the server's callback
waits on an Event there), so the server is observed mid-load without anything in the
product that exists for tests.
"""
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, run_cli
from serverproc import ServerProcess, free_port, serve_in_thread
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from moeviz.cli import PROGRESS_MIN_BYTES, LoadProgress
from moeviz.engine import Engine, ModelLoadError, SamplingSettings
from moeviz.fixtures import FixtureSpec, write_fixture
from moeviz.server import ServerSettings
from moeviz.server.loading import engine_app


@pytest.fixture(scope="module")
def large_model(tmp_path_factory):
    """A fixture above PROGRESS_MIN_BYTES (32 experts x 128 x 256 x 3 x 4 layers, f32)."""
    path = write_fixture(tmp_path_factory.mktemp("large") / "large.gguf",
                         FixtureSpec(arch="llama", n_embd=128, n_ff=256, n_expert=32, n_expert_used=4))
    assert path.stat().st_size >= PROGRESS_MIN_BYTES
    return path


@pytest.fixture(scope="module")
def unknown_arch(tmp_path_factory):
    """Passes moeviz's metadata checks; llama.cpp refuses it (unknown architecture)."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("bad") / "foomoe.gguf"
    w = gguf.GGUFWriter(str(path), "foomoe")
    for key, value in {"block_count": 1, "expert_count": 2, "expert_used_count": 1}.items():
        w.add_uint32(f"foomoe.{key}", value)
    w.add_tensor("blk.0.ffn_gate_inp.weight", np.zeros((2, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def get(url, timeout=10):
    """(status, body text) for any status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# Engine -------------------------------------------------------------------------------
def test_engine_reports_rising_progress_ending_at_one(fixture_models):
    seen = []
    engine = Engine(fixture_models["deepseek2"], n_ctx=256, capture="callback", progress=seen.append)
    try:
        assert len(seen) > 10                      # one report per tensor, then 1.0
        assert seen == sorted(seen) and 0.0 <= seen[0] < 0.1 and seen[-1] == 1.0
        assert all(0.0 <= p <= 1.0 for p in seen)
        assert list(engine.generate("Hello", SamplingSettings(max_tokens=2, temperature=0.0)))  # it works
    finally:
        engine.close()


def test_progress_can_stop_the_load_and_its_exceptions_come_back(fixture_models):
    path = fixture_models["deepseek2"]
    calls = []

    def stop_halfway(p):
        calls.append(p)
        return None if p < 0.5 else False   # None continues, False stops

    with pytest.raises(ModelLoadError, match="loading .*deepseek2.gguf was stopped"):
        Engine(path, n_ctx=256, capture="callback", progress=stop_halfway)
    assert calls[-1] >= 0.5 and all(p < 0.5 for p in calls[:-1])   # llama.cpp stopped at once

    def boom(p):
        if p > 0.3:
            raise KeyError("from the progress callable")

    with pytest.raises(KeyError, match="from the progress callable"):
        Engine(path, n_ctx=256, capture="callback", progress=boom)

    def interrupted(p):             # Ctrl-C during a long `record` load arrives like this
        if p > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Engine(path, n_ctx=256, capture="callback", progress=interrupted)
    # nothing was left half-loaded: the same file loads fine afterwards
    Engine(path, n_ctx=256, capture="callback", progress=lambda p: None).close()


# CLI progress -------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_load_progress_one_updating_line_on_a_terminal():
    out = Terminal()
    show = LoadProgress(out, PROGRESS_MIN_BYTES)
    for p in (0.0, 0.004, 0.42, 0.425, 0.9, 1.0):
        show(p)
    show.end()
    assert out.getvalue() == ("\rmoeviz: loading model   0%\rmoeviz: loading model  42%"
                              "\rmoeviz: loading model  90%\rmoeviz: loading model 100%\n")
    out = Terminal()
    show = LoadProgress(out, PROGRESS_MIN_BYTES)
    show(0.3)
    show.end()                          # a load that failed: its error starts a new line
    assert out.getvalue() == "\rmoeviz: loading model  30%\n"


def test_load_progress_a_few_lines_elsewhere_and_nothing_for_small_models():
    out = io.StringIO()
    show = LoadProgress(out, PROGRESS_MIN_BYTES)
    for i in range(101):
        show(i / 100)
    show.end()
    assert out.getvalue().splitlines() == [f"moeviz: loading model {p:3d}%" for p in (0, 25, 50, 75, 100)]
    out = io.StringIO()
    show = LoadProgress(out, PROGRESS_MIN_BYTES - 1)
    for i in range(101):
        show(i / 100)
    assert out.getvalue() == ""


def test_record_prints_load_progress_for_a_large_model(large_model, fixture_models, tmp_path):
    r = run_cli("record", "-m", large_model, "--prompt", "Hello", "-o", tmp_path / "a.json", "--max-tokens", 2,
                check=True)
    lines = r.stderr.splitlines()
    loading = [line for line in lines if line.startswith("moeviz: loading model")]
    assert loading[0] == "moeviz: loading model   0%" and loading[-1] == "moeviz: loading model 100%", r.stderr
    percents = [int(line.split()[-1].rstrip("%")) for line in loading]
    assert percents == sorted(percents) and len(percents) <= 5
    assert lines[-1].startswith("moeviz: recorded")
    r = run_cli("record", "-m", fixture_models["llama"], "--prompt", "Hello", "-o", tmp_path / "b.json",
                "--max-tokens", 2, check=True)
    assert r.stderr.splitlines()[0].startswith("moeviz: recorded")   # a small model loads quietly


# The server while loading, in process ---------------------------------------------------
class Gate:
    """Holds a real llama.cpp load inside its progress callback, from the first report at
    or past `at`, until released."""

    def __init__(self, at=0.5):
        self.at = at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.built = []         # what each build ended with: an Engine or an exception

    def hold(self, progress):
        def report(p):
            keep = progress(p)
            if p >= self.at and not self.reached.is_set():
                self.held_at = p
                self.reached.set()
                assert self.release.wait(60)
            return keep
        return report

    def engine(self, path):
        def make(progress):
            try:
                engine = Engine(path, n_ctx=256, capture="callback", progress=self.hold(progress))
            except BaseException as e:
                self.built.append(e)
                raise
            self.built.append(engine)
            return engine
        return make


def loading_app(make_engine, path, tmp_path, **kw):
    events = {"failed": [], "ready": 0, "exit": 0}

    def failed(message, exc):
        events["failed"].append(message)

    def ready():
        events["ready"] += 1

    def exit_():
        events["exit"] += 1

    app = engine_app(make_engine, ServerSettings(data_dir=tmp_path / "runs"), model_path=path,
                     on_failed=failed, on_ready=ready, on_exit=exit_, **kw)
    return app, events


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_server_answers_while_the_model_loads_then_serves_it(fixture_models, tmp_path):
    path = fixture_models["deepseek2"]
    gate = Gate(0.5)
    app, events = loading_app(gate.engine(path), path, tmp_path)
    with serve_in_thread(app) as (url, _server):
        assert gate.reached.wait(60)
        status, body = get(url + "/health")
        health = json.loads(body)
        assert status == 503 and health == {"status": "loading", "progress": round(gate.held_at, 4),
                                            "model": "deepseek2.gguf"}
        assert 0.5 <= health["progress"] < 1.0
        percent = int(100 * gate.held_at)
        status, page = get(url + "/")
        assert status == 503 and f"loading model {percent}%" in page and "/health" in page
        status, page = get(url + "/r/abcdefgh")               # a permalink page waits the same way
        assert status == 503 and f"loading model {percent}%" in page
        for route in ("/api/model", "/api/prompts", "/static/js/main.js"):
            status, body = get(url + route)
            assert status == 503 and json.loads(body) == {"error": f"the model is still loading ({percent}%)"}
        with pytest.raises(InvalidStatus) as refused:
            connect(url.replace("http", "ws") + "/ws", open_timeout=10)
        assert refused.value.response.status_code == 503
        assert json.loads(refused.value.response.body) == {"error": f"the model is still loading ({percent}%)"}
        assert events == {"failed": [], "ready": 0, "exit": 0}

        gate.release.set()
        wait_for(lambda: app.state == "ready")
        assert events["ready"] == 1
        status, body = get(url + "/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "queue": 0}
        status, page = get(url + "/")
        assert status == 200 and "moeviz-config" in page and "loading model" not in page
        with connect(url.replace("http", "ws") + "/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "model"
            ws.send(json.dumps({"type": "generate", "text": "Hi", "max_tokens": 2}))
            kinds = []
            while not kinds or kinds[-1] not in ("done", "error"):
                kinds.append(json.loads(ws.recv(timeout=30))["type"])
            assert kinds[-1] == "done"
        worker = app.app.state.worker
    # shut down: the real app's worker stopped, then the engine closed
    engine = gate.built[0]
    assert not worker._thread.is_alive() and engine.lm.ctx is None and engine.lm.model is None


def test_shutdown_during_the_load_stops_llama_cpp(fixture_models, tmp_path):
    path = fixture_models["deepseek2"]
    gate = Gate(0.3)
    app, events = loading_app(gate.engine(path), path, tmp_path)
    with serve_in_thread(app) as (url, server):
        assert gate.reached.wait(60)
        server.should_exit = True          # Ctrl-C: uvicorn shuts down, lifespan included
        time.sleep(0.2)
        gate.release.set()                 # llama.cpp's next progress report gets False
    assert isinstance(gate.built[0], ModelLoadError) and "was stopped" in str(gate.built[0])
    assert app.state == "loading" and events == {"failed": [], "ready": 0, "exit": 0}


def test_a_failed_load_is_shown_then_the_server_exits(unknown_arch, tmp_path):
    gate = Gate(0.0)
    started = threading.Event()

    def make(progress):
        started.wait(60)            # hold until the test has the loading page
        return gate.engine(unknown_arch)(progress)

    app, events = loading_app(make, unknown_arch, tmp_path, linger_s=0.5)
    with serve_in_thread(app) as (url, _server):
        status, page = get(url + "/")
        assert status == 503 and "loading model 0%" in page
        started.set()
        wait_for(lambda: app.state == "error")
        message = events["failed"][0]
        assert message.startswith("llama.cpp could not load") and "unknown model architecture: 'foomoe'" in message
        status, body = get(url + "/health")
        assert status == 503 and json.loads(body) == {"status": "error", "error": message}
        status, page = get(url + "/")
        assert status == 503 and "the model failed to load: llama.cpp could not load" in page
        status, body = get(url + "/api/model")
        assert status == 503 and json.loads(body) == {"error": message}
        wait_for(lambda: events["exit"] == 1, timeout=10)
    assert events["failed"] == [message] and events["ready"] == 0


# `moeviz serve` as a real process -----------------------------------------------------
def test_serve_listens_first_and_shows_progress(large_model):
    with ServerProcess("--model", large_model, "--n-ctx", "256", "--capture", "callback") as s:
        out = "".join(s.lines)
        first, *rest = s.lines
        assert first.startswith(f"moeviz: loading {large_model}; the page at {s.url}/ shows the progress")
        loading = [line.strip() for line in rest if line.startswith("moeviz: loading model")]
        assert loading[0] == "moeviz: loading model   0%" and loading[-1] == "moeviz: loading model 100%", out
        assert s.banner.startswith("moeviz: serving") and "capture callback" in s.banner
        status, body = get(s.url + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_serve_answers_from_the_start_with_a_valid_state(fixture_models):
    """Every /health answer from the first one on is "loading" (503, progress rising) or
    "ok" (200); how many "loading" answers there are depends on the machine's speed."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moeviz", "serve", "--port", str(port), "--model",
                             str(fixture_models["deepseek2"]), "--n-ctx", "256"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    answers = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not answers or answers[-1][0] != 200):
            try:
                answers.append(get(f"http://127.0.0.1:{port}/health", timeout=2))
            except OSError:
                assert proc.poll() is None
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert answers and answers[-1][0] == 200
    progress = []
    for status, body in answers[:-1]:
        health = json.loads(body)
        assert status == 503 and health["status"] == "loading" and health["model"] == "deepseek2.gguf"
        progress.append(health["progress"])
    assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress)


def test_serve_load_failure_shows_its_line_then_exits_nonzero(unknown_arch):
    port = free_port()
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "moeviz", "serve", "--port", str(port),
                             "--model", str(unknown_arch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    health = None
    try:
        while health is None and proc.poll() is None:
            try:
                status, body = get(f"http://127.0.0.1:{port}/health", timeout=2)
                if json.loads(body)["status"] == "error":
                    health = status, json.loads(body)
            except OSError:
                time.sleep(0.05)
        status, page = get(f"http://127.0.0.1:{port}/")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"moeviz serve: error: llama.cpp could not load {unknown_arch}")
    assert "unknown model architecture: 'foomoe'" in lines[0]
    message = lines[0].removeprefix("moeviz serve: error: ")
    assert health == (503, {"status": "error", "error": message})
    assert status == 503 and "the model failed to load: " in page
    assert out.startswith("moeviz: loading") and "serving" not in out
    assert time.time() - t0 < 30


def test_serve_mistyped_model_path_fails_at_once(tmp_path):
    r = run_cli("serve", "--model", tmp_path / "nope.gguf", "--port", free_port(), timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == f"moeviz serve: error: model file not found: {tmp_path / 'nope.gguf'}"
