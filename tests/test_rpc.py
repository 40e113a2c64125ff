"""llama.cpp's RPC backend: a fixture split over two rpc-servers on loopback (started and
stopped here) routes exactly as the local run; lost and unreachable servers are one-line
errors, and a moeviz server whose rpc-server died stays up."""
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import run_cli
from serverproc import ServerProcess, free_port
from test_capture import record

from moeviz.engine import Engine
from moeviz.fixtures import FixtureSpec, write_fixture
from moeviz.llama import rpc
from moeviz.llama.model import ModelLoadError
from moeviz.llama.rpc_server import rpc_server_command, rpc_server_path

EXACT = dict(n_ctx=512, kv_type="f32", flash_attn="off")
PROMPT = "The quick brown fox, in Python: [x * x for x in range(10)] # squares"


def _built() -> bool:
    try:
        rpc_server_path()
    except Exception:  # noqa: BLE001
        return False
    return rpc.rpc_supported()


def test_rpc_backend_and_server_are_built():
    """make setup builds libggml-rpc into the wheel and rpc-server beside it, with moeviz's
    soft-failure patch (patches/0020-rpc-soft-failure.patch)."""
    assert rpc.rpc_supported(), "the installed llama-cpp-python has no RPC backend (-DGGML_RPC=ON)"
    assert rpc_server_path().is_file()
    assert rpc.soft_failure(), "the installed ggml-rpc lacks patches/0020-rpc-soft-failure.patch (run make setup)"


needs_rpc = pytest.mark.skipif(not _built(), reason="needs make setup's RPC build")


class RpcServer:
    def __init__(self, threads=1, mem=None, stderr=subprocess.DEVNULL):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(rpc_server_command(port=self.port, threads=threads, mem=mem),
                                     stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, "rpc-server exited at start"
            try:
                rpc.probe(self.endpoint, timeout=2)
                return
            except rpc.RpcError:
                time.sleep(0.1)
        raise RuntimeError("rpc-server did not come up")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def servers():
    s = [RpcServer(), RpcServer()]
    yield s
    for x in s:
        x.stop()


@needs_rpc
@pytest.mark.parametrize("capture", ["native", "callback"])
def test_split_over_two_servers_routes_exactly_as_local(fixture_models, servers, capture):
    path = fixture_models["llama"]
    remote = Engine(path, capture=capture, n_gpu_layers=-1, rpc=[s.endpoint for s in servers],
                    tensor_split="1,1", **EXACT)
    try:
        hosts = {r["host"] for r in remote.placement}
        assert hosts == {servers[0].endpoint, servers[1].endpoint}, remote.placement
        a = record(remote, PROMPT, probs=True, max_tokens=8)
    finally:
        remote.close()
    local = Engine(path, capture=capture, **EXACT)
    try:
        assert {r["host"] for r in local.placement} <= {"local"}
        b = record(local, PROMPT, probs=True, max_tokens=8)
    finally:
        local.close()
    assert [t["id"] for t in a.tokens] == [t["id"] for t in b.tokens]
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.probs, b.probs)


@needs_rpc
def test_cpu_moe_keeps_experts_local_and_info_shows_the_plan(fixture_models, servers):
    from moeviz.llama.log import llama_log

    eps = ",".join(s.endpoint for s in servers)
    mark = llama_log().mark()
    e = Engine(fixture_models["llama"], n_gpu_layers=-1, rpc=eps, cpu_moe=True, **EXACT)
    try:
        kept = [line for _, line in llama_log().since(mark) if "exps.weight" in line and "overridden to CPU" in line]
        assert len(kept) == 3 * len(e.info.moe_layers), kept   # gate, up, down of every MoE layer stay here
        assert e.placement_text().count("127.0.0.1:") == 2
        from moeviz.engine import SamplingSettings
        from moeviz.record import record as record_trace

        t = record_trace(e, PROMPT, SamplingSettings(max_tokens=2, temperature=0.0))
        assert t.settings["rpc"]["servers"] == [s.endpoint for s in servers]
        assert {r["host"] for r in t.settings["rpc"]["placement"]} >= {s.endpoint for s in servers}
    finally:
        e.close()
    r = run_cli("info", fixture_models["llama"], "--rpc", eps, "--n-gpu-layers", "-1", "--tensor-split", "1,1",
                check=True)
    assert f"on {servers[0].endpoint}" in r.stdout and f"on {servers[1].endpoint}" in r.stdout


def test_unreachable_address_is_a_clear_error_at_start(fixture_models, tmp_path):
    port = free_port()   # nothing listens there
    r = run_cli("record", "--model", fixture_models["llama"], "--rpc", f"127.0.0.1:{port}", "--n-gpu-layers", "-1",
                "--prompt", "hi", "--out", tmp_path / "t.json")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == (f"moeviz record: error: --rpc 127.0.0.1:{port}: cannot reach an rpc-server there "
                         f"(connection refused); start one with 'moeviz rpc-server --port {port}'"), r.stderr
    r = run_cli("record", "--model", fixture_models["llama"], "--rpc", "nonsense", "--prompt", "hi",
                "--out", tmp_path / "t.json")
    assert r.returncode == 1 and "--rpc wants HOST:PORT" in r.stderr.strip().splitlines()[-1]


def test_not_an_rpc_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        ep = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(rpc.RpcError, match="did not answer"):
            rpc.probe(ep, timeout=0.5)


def test_rpc_server_warns_off_loopback_and_checks_mem():
    from moeviz.llama.rpc_server import WARNING, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert "NO authentication" in WARNING
    for bad in ("0", "-5", "1.5", "lots", "64MiB", ""):
        r = run_cli("rpc-server", "--mem", bad)
        assert r.returncode == 1, (bad, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"moeviz rpc-server: error: --mem wants a whole number of MiB, at least 1, got {bad!r}"], r.stderr
    r = run_cli("rpc-server", "--help", check=True)
    assert "--mem MiB" in r.stdout and "refuses buffers" in " ".join(r.stdout.split())


@needs_rpc
def test_rpc_server_command_passes_mem_through():
    cmd = rpc_server_command(port=50052, mem=64)
    assert cmd[cmd.index("--mem") + 1] == "64"
    assert "--mem" not in rpc_server_command(port=50052)
    r = subprocess.run([*cmd[:1], "--help"], capture_output=True, text=True, timeout=30)
    assert "--mem MiB" in r.stderr   # the cached binary carries patches/rpc-server/0030-rpc-server-mem.patch


MiB = 1 << 20


@needs_rpc
def test_mem_is_the_memory_a_client_sees():
    """rpc-server --mem 64: its device reports 64 MiB free and 64 MiB total to a client
    (ggml_backend_dev_memory on the RPC device, what llama.cpp splits by)."""
    s = RpcServer(mem=64)
    try:
        (dev,) = rpc.add_servers([s.endpoint])
        assert rpc.device_memory(dev) == (64 * MiB, 64 * MiB)
        assert rpc.offered_memory([dev]) == {s.endpoint: 64 * MiB}
    finally:
        s.stop()
    plain = RpcServer()
    try:
        (dev,) = rpc.add_servers([plain.endpoint])
        free, total = rpc.device_memory(dev)
        assert total > 1024 * MiB and 0 < free <= total   # the machine's own memory
    finally:
        plain.stop()


@needs_rpc
def test_default_split_follows_each_servers_mem(tmp_path):
    """Two servers, --mem 64 and --mem 192, no --tensor-split: llama.cpp shares the 9
    layers (8 + output) 1:3 by their reported free memory, as moeviz info plans it."""
    path = write_fixture(tmp_path / "eight.gguf", FixtureSpec(arch="llama", n_layer=8))
    pair = [RpcServer(mem=64), RpcServer(mem=192)]
    eps = [s.endpoint for s in pair]
    try:
        e = Engine(path, n_gpu_layers=-1, rpc=eps, **EXACT)
        try:
            got = [(r["host"], r["layers"]) for r in e.placement]
        finally:
            e.close()
        assert got == [(eps[0], [0, 2]), (eps[1], [3, 8])], got
        runs, _ = rpc.plan_placement(8, eps, -1)
        assert [(r["host"], r["layers"]) for r in runs] == got
        # the other way round: the larger share moves with the larger --mem
        runs, _ = rpc.plan_placement(8, eps[::-1], -1)
        assert [(r["host"], r["layers"]) for r in runs] == [(eps[1], [0, 6]), (eps[0], [7, 8])]
        # --tensor-split still decides when given
        runs, _ = rpc.plan_placement(8, eps, -1, "1,1")
        assert [(r["host"], r["layers"]) for r in runs] == [(eps[0], [0, 4]), (eps[1], [5, 8])]
    finally:
        for s in pair:
            s.stop()


def _refusal(endpoint, mib, offered):
    return (f"rpc server {endpoint} cannot take a {mib} MiB buffer; it offers {offered} MiB in all "
            "(moeviz rpc-server --mem): put fewer layers there (--n-gpu-layers, --tensor-split) or give it more memory")


@needs_rpc
def test_a_model_past_mem_is_refused_in_one_line(fixture_models, tmp_path):
    """Buffers past --mem are refused by the server, and the load fails in one line
    naming the server and what it offers: the compute buffer of a context (--mem 4:
    the fixture's 1.8 MiB of weights and 0.5 MiB KV cache fit, its 5.6 MiB compute
    buffer does not), and a model's weights (--mem 16, 27.5 MiB of weights). The server
    stays up with its budget free again: a model that fits then loads and runs there."""
    small = fixture_models["llama"]
    big = write_fixture(tmp_path / "big.gguf", FixtureSpec(arch="llama", n_embd=256, n_ff=256))
    log4, log16 = tmp_path / "mem4.log", tmp_path / "mem16.log"
    with open(log4, "w") as err4, open(log16, "w") as err16:
        four, sixteen = RpcServer(mem=4, stderr=err4), RpcServer(mem=16, stderr=err16)
    try:
        r = run_cli("record", "--model", small, "--rpc", four.endpoint, "--n-gpu-layers", "-1",
                    "--n-ctx", "512", "--kv-type", "f32", "--flash-attn", "off", "--prompt", "hi",
                    "--out", tmp_path / "t.json")
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1] == "moeviz record: error: " + _refusal(four.endpoint, "5.6", 4), \
            r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "t.json").exists()
        assert "rpc-server: refused a buffer of 5.6 MiB on CPU: 2.3 MiB of --mem 4 MiB in use" in log4.read_text()

        with pytest.raises(ModelLoadError) as refused:
            Engine(big, n_gpu_layers=-1, rpc=[sixteen.endpoint], **EXACT)
        assert str(refused.value) == _refusal(sixteen.endpoint, "27.5", 16)
        assert "rpc-server: refused a buffer of 27.5 MiB on CPU: 0.0 MiB of --mem 16 MiB in use" in log16.read_text()
        assert four.proc.poll() is None and sixteen.proc.poll() is None
        e = Engine(small, n_gpu_layers=-1, rpc=[sixteen.endpoint], **EXACT)
        try:
            assert {r["host"] for r in e.placement} == {sixteen.endpoint}
            assert len(record(e, PROMPT, max_tokens=2).tokens) > 0
        finally:
            e.close()
    finally:
        four.stop()
        sixteen.stop()


def _post(url, body, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@needs_rpc
def test_a_lost_server_is_a_one_line_error_and_moeviz_stays_up(fixture_models, tmp_path):
    pair = [RpcServer(), RpcServer()]
    try:
        with ServerProcess("--model", fixture_models["llama"], "--n-ctx", "512", "--n-gpu-layers", "-1",
                           "--rpc", ",".join(p.endpoint for p in pair), "--tensor-split", "1,1",
                           "--data-dir", tmp_path / "runs") as s:
            assert pair[0].endpoint in s.banner and pair[1].endpoint in s.banner, s.banner
            body = {"model": "m", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}
            status, out = _post(s.url + "/v1/completions", body)
            assert status == 200, out
            pair[1].stop()
            time.sleep(0.5)
            status, out = _post(s.url + "/v1/completions", body)
            assert status >= 500, out
            msg = out["error"]["message"]
            assert "\n" not in msg and f"rpc-server at {pair[1].endpoint}" in msg, msg
            assert s.proc.poll() is None
            status, health = _get(s.url + "/health")
            assert status == 503 and health["status"] == "error" and pair[1].endpoint in health["error"], health
    finally:
        for p in pair:
            p.stop()


def _get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# A server that dies inside a computation, on cue: moeviz run by this launcher kills the
# rpc-server (pid:N from MOEVIZ_TEST_KILL) as its Nth llama_decode starts, after the
# engine's liveness check has passed, so ggml-rpc meets the dead server in the middle of
# llama_decode (sending the graph, reading the logits), as a kill -9 mid-run does.
KILL_IN_DECODE = r"""
import os, signal, sys, time
if __name__ == "__main__":
    import llama_cpp.llama_cpp as lc
    pid, at = (int(x) for x in os.environ.pop("MOEVIZ_TEST_KILL").split(":"))
    real, calls = lc.llama_decode, [0]
    def llama_decode(ctx, batch):
        calls[0] += 1
        if calls[0] == at:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)   # gone: its end of the connections closed
        return real(ctx, batch)
    lc.llama_decode = llama_decode
    if sys.argv[1] == "-c":
        exec(compile(open(sys.argv[2]).read(), sys.argv[2], "exec"))
    else:
        from moeviz.cli import main
        sys.exit(main(sys.argv[1:]))
"""


def _launcher(tmp_path) -> str:
    path = tmp_path / "kill_in_decode.py"
    path.write_text(KILL_IN_DECODE)
    return str(path)


def _env(kill: str) -> dict:
    import os

    from conftest import ROOT

    return {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "MOEVIZ_TEST_KILL": kill}


# the engine's view: the run that met the dead server fails with the one line and returns
# (no thread left blocked), later runs fail with it at once, the engine closes, and a
# local engine in the same process runs as ever
LOST_IN_DECODE = r"""
import sys, threading, time
from test_rpc import PROMPT
from moeviz.engine import Engine, SamplingSettings
from moeviz.llama import rpc
path, ep0, ep1, capture = sys.argv[3:7]
e = Engine(path, n_gpu_layers=-1, rpc=[ep0, ep1], tensor_split="1,1", n_ctx=512, capture=capture)
out, events = {}, []
def run():
    try:
        for ev in e.generate(PROMPT, SamplingSettings(max_tokens=32, temperature=0.0)):
            events.append(type(ev).__name__)
    except rpc.RpcServerLost as err:
        out["error"] = err.one_line()
t = threading.Thread(target=run, daemon=True)
t0 = time.time()
t.start()
t.join(60)
print("BLOCKED" if t.is_alive() else f"RETURNED {time.time() - t0:.1f}")
print("EVENTS", ",".join(events))
print("ERROR", out.get("error"))
t0 = time.time()
try:
    list(e.generate(PROMPT, SamplingSettings(max_tokens=4)))
    print("LATER ran")
except rpc.RpcServerLost as err:
    print("LATER", err.one_line())
print("LATER_S", round(time.time() - t0, 1))
print("ABORT_GUARD", rpc.lost_message())
from moeviz.llama.log import llama_log
print("GGML_LOG", next((line.strip() for _, line in llama_log().since(0) if "went away" in line), None))
e.close()
local = Engine(path, n_ctx=512)
evs = list(local.generate(PROMPT, SamplingSettings(max_tokens=4, temperature=0.0)))
print("LOCAL", type(evs[-1]).__name__, evs[-1].n_generated > 0)
local.close()
print("ALIVE")
"""


@needs_rpc
@pytest.mark.parametrize("capture", ["native", "callback"])
@pytest.mark.parametrize("at", [1, 3])
def test_a_server_lost_mid_decode_fails_the_run_in_one_line(fixture_models, tmp_path, capture, at):
    """Decode 1 is the prefill (the first decode after the load, which also reserves
    llama.cpp's compute buffers: allocations on the dead server), 2 the first generated
    token: the server dies as decode `at` starts."""
    pair = [RpcServer(), RpcServer()]
    try:
        script = tmp_path / "lost.py"
        script.write_text(LOST_IN_DECODE)
        from conftest import PY

        r = subprocess.run([PY, _launcher(tmp_path), "-c", str(script), str(fixture_models["llama"]),
                            pair[0].endpoint, pair[1].endpoint, capture], capture_output=True, text=True,
                           timeout=180, env=_env(f"{pair[1].proc.pid}:{at}"))
        assert r.returncode == 0 and "ALIVE" in r.stdout, r.stdout + r.stderr[-3000:]
        got = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
        assert got["RETURNED"], r.stdout   # the run's thread came back: nothing parked
        # no event from the decode that met the dead server
        assert got["EVENTS"] == {1: "", 3: "PromptRouted,TokenRouted"}[at], r.stdout
        ep = pair[1].endpoint
        assert got["ERROR"] == f"rpc server {ep} went away during the run; restart it and moeviz", r.stdout
        assert got["LATER"] == f"rpc server {ep} went away during an earlier run; restart it and moeviz", r.stdout
        assert float(got["LATER_S"]) < 5, r.stdout
        assert got["ABORT_GUARD"] == "None", r.stdout   # ggml-rpc did not abort: the patch failed softly
        assert got["LOCAL"] == "Finished True", r.stdout
        assert got["GGML_LOG"].startswith(f"RPC server {ep} went away ("), r.stdout   # ggml-rpc's own log line
    finally:
        for p in pair:
            p.stop()


def _serve(tmp_path, args, kill):
    """`moeviz serve` through the launcher: (process, url), up and past its banner."""
    from conftest import PY

    port = free_port()
    proc = subprocess.Popen([PY, _launcher(tmp_path), "serve", "--port", str(port), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(kill))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            assert time.time() < deadline, "moeviz serve did not come up"
            time.sleep(0.2)
    while not (line := proc.stdout.readline()).startswith("moeviz: serving"):
        assert line, "moeviz serve printed no banner"
    return proc, url


def _ws_run(url, body, timeout=120):
    from websockets.sync.client import connect

    msgs = []
    with connect(url.replace("http://", "ws://") + "/ws", max_size=None, open_timeout=30) as ws:
        ws.recv(timeout=30)   # the model message
        ws.send(json.dumps({"type": "generate", **body}))
        while True:
            m = json.loads(ws.recv(timeout=timeout))
            msgs.append(m)
            if m["type"] in ("done", "error"):
                return msgs


@needs_rpc
def test_a_server_lost_mid_run_over_the_websocket_and_moeviz_stays_up(fixture_models, tmp_path):
    pair = [RpcServer(), RpcServer()]
    proc = None
    try:
        ep = pair[1].endpoint
        proc, url = _serve(tmp_path, ["--model", fixture_models["llama"], "--n-ctx", "512", "--n-gpu-layers", "-1",
                                      "--rpc", f"{pair[0].endpoint},{ep}", "--tensor-split", "1,1",
                                      "--data-dir", tmp_path / "runs"], f"{pair[1].proc.pid}:3")
        body = {"text": PROMPT, "max_tokens": 32, "temperature": 0}
        msgs = _ws_run(url, body)
        assert [m["type"] for m in msgs if m["type"] != "queued"][:2] == ["start", "prompt"], msgs[:3]
        assert msgs[-1] == {"type": "error",
                            "message": f"rpc server {ep} went away during the run; restart it and moeviz"}, msgs[-3:]
        assert sum(m["type"] == "token" for m in msgs) == 1, [m["type"] for m in msgs]
        assert proc.poll() is None
        status, health = _get(url + "/health")
        later = f"rpc server {ep} went away during an earlier run; restart it and moeviz"
        assert status == 503 and health["status"] == "error" and health["error"] == later, health
        t0 = time.time()
        again = _ws_run(url, body, timeout=30)   # refused at once with the same line, never hangs
        assert again[-1] == {"type": "error", "message": later} and time.time() - t0 < 10, again
        status, out = _post(url + "/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 4})
        assert status >= 500 and out["error"]["message"] == later, out
        status, _ = _get(url + "/api/model")
        assert status == 200 and proc.poll() is None   # the web server answers as before
    finally:
        if proc is not None:
            proc.terminate()
            out = proc.communicate(timeout=20)[0]
            assert "Traceback" not in out, out[-3000:]
        for p in pair:
            p.stop()


@needs_rpc
def test_a_server_lost_mid_run_in_the_cli_is_one_line(fixture_models, tmp_path):
    pair = [RpcServer(), RpcServer()]
    try:
        from conftest import PY

        ep = pair[1].endpoint
        r = subprocess.run([PY, _launcher(tmp_path), "record", "--model", str(fixture_models["llama"]), "--n-ctx",
                            "512", "--n-gpu-layers", "-1", "--rpc", f"{pair[0].endpoint},{ep}", "--tensor-split", "1,1",
                            "--prompt", PROMPT, "--max-tokens", "32", "--temperature", "0", "--out",
                            str(tmp_path / "t.json")], capture_output=True, text=True, timeout=180,
                           env=_env(f"{pair[1].proc.pid}:3"))
        assert r.returncode == 1, r.stderr[-3000:]
        assert r.stderr.strip().splitlines()[-1] == (f"moeviz record: error: rpc server {ep} went away during the "
                                                     "run; restart it and moeviz"), r.stderr[-3000:]
        assert "Traceback" not in r.stderr and not (tmp_path / "t.json").exists()
    finally:
        for p in pair:
            p.stop()


@needs_rpc
def test_kill_9_of_an_rpc_server_during_a_long_run(fixture_models, tmp_path):
    """No cue: the server is killed whenever the run has started; wherever the kill lands
    (inside a decode or between two), the run ends in one line naming it, and moeviz stays up."""
    pair = [RpcServer(), RpcServer()]
    try:
        ep = pair[1].endpoint
        with ServerProcess("--model", fixture_models["llama"], "--n-ctx", "512", "--n-gpu-layers", "-1",
                           "--rpc", f"{pair[0].endpoint},{ep}", "--tensor-split", "1,1",
                           "--data-dir", tmp_path / "runs") as s:
            from websockets.sync.client import connect

            with connect(s.ws_url, max_size=None, open_timeout=30) as ws:
                ws.recv(timeout=30)
                ws.send(json.dumps({"type": "generate", "text": PROMPT, "max_tokens": 400, "seed": 3}))
                while (m := json.loads(ws.recv(timeout=60)))["type"] not in ("prompt", "error", "done"):
                    pass
                assert m["type"] == "prompt", m
                pair[1].proc.kill()
                msgs = []
                while (m := json.loads(ws.recv(timeout=60)))["type"] not in ("error", "done"):
                    msgs.append(m)
            if m["type"] == "done":   # it finished before the kill took: the next run meets it
                m = _ws_run(s.url, {"text": PROMPT, "max_tokens": 8})[-1]
            assert m["type"] == "error" and "\n" not in m["message"] and ep in m["message"], m
            assert "restart it" in m["message"], m
            assert s.proc.poll() is None
            status, health = _get(s.url + "/health")
            assert status == 503 and ep in health["error"], health
            assert "Traceback" not in s.close()
    finally:
        for p in pair:
            p.stop()
