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
from moeviz.llama import rpc
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
    """make setup builds libggml-rpc into the wheel and rpc-server beside it."""
    assert rpc.rpc_supported(), "the installed llama-cpp-python has no RPC backend (-DGGML_RPC=ON)"
    assert rpc_server_path().is_file()


needs_rpc = pytest.mark.skipif(not _built(), reason="needs make setup's RPC build")


class RpcServer:
    def __init__(self, threads=1):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(rpc_server_command(port=self.port, threads=threads),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_rpc_server_warns_off_loopback_and_refuses_mem():
    from moeviz.llama.rpc_server import WARNING, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert "NO authentication" in WARNING
    r = run_cli("rpc-server", "--mem", "1024")
    assert r.returncode == 1 and "--mem" in r.stderr


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
            with urllib.request.urlopen(s.url + "/health", timeout=10) as r:
                assert r.status == 200
    finally:
        for p in pair:
            p.stop()


LOST_MID_COMPUTATION = r"""
import sys, threading, time
sys.path.insert(0, sys.argv[2])
from test_rpc import RpcServer
from moeviz.engine import Engine
from moeviz.llama import rpc
pair = [RpcServer(), RpcServer()]
e = Engine(sys.argv[1], n_gpu_layers=-1, rpc=[p.endpoint for p in pair], tensor_split="1,1", n_ctx=512)
pair[1].stop()
time.sleep(0.3)
# straight into llama.cpp, past moeviz's check: ggml-rpc meets the dead server and aborts
t = threading.Thread(target=e.lm.clear_memory, daemon=True)
t.start()
t.join(5)
assert t.is_alive() and rpc.lost_message(), "the guard did not hold the lost computation"
try:
    e.check_rpc()
except rpc.RpcServerLost as err:
    print("ERROR:", err.one_line())
pair[0].stop()
print("ALIVE")
sys.stdout.flush()
import os
os._exit(0)
"""


@needs_rpc
def test_a_server_lost_mid_computation_does_not_abort_the_process(fixture_models, tmp_path):
    script = tmp_path / "lost.py"
    script.write_text(LOST_MID_COMPUTATION)
    from conftest import PY, ROOT

    r = subprocess.run([PY, str(script), str(fixture_models["llama"]), str(ROOT / "tests")], capture_output=True,
                       text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ALIVE" in r.stdout
    err = next(line for line in r.stdout.splitlines() if line.startswith("ERROR:"))
    assert "rpc-server" in err and "lost during a computation" in err
