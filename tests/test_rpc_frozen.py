"""Issue 21 findings 7 and 8: a frozen rpc-server host, and an rpc-server that cannot listen.

A host that answers HELLO and then goes silent (a frozen machine, a stopped process) left
`serve`/`record --rpc` stuck for ever in ggml-rpc's recv (at "loading 0%", or mid-run with
/health saying ok and cancel unanswered). moeviz's patches/0050-rpc-timeouts.patch bounds
every wait of ggml-rpc (connect and HELLO 5 s, every command $MOEVIZ_RPC_TIMEOUT s), after
which the server is lost as a dead one is (patch 0020): one line, at load and mid-run.

`moeviz rpc-server` said "rpc-server on HOST:PORT" and exited 0 when llama.cpp's
rpc-server could not listen; it now exits non-zero with one line, and says it listens only
once it does."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from conftest import PY, ROOT
from websockets.sync.client import connect
from serverproc import ServerProcess, free_port
from test_rpc import PROMPT, RpcServer, _get, needs_rpc

from moeviz.llama import rpc

TIMEOUT_S = 2   # MOEVIZ_RPC_TIMEOUT in these tests


class FrozenHost:
    """Answers every connection's HELLO as an rpc-server of this protocol does, then reads
    nothing and answers nothing (the connection stays open): a frozen machine."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.hellos = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            try:
                conn.settimeout(10)
                hello = b""
                while len(hello) < 1 + 8 + rpc.RPC_CONN_CAPS_SIZE:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    hello += chunk
                if hello[:1] == bytes([rpc.RPC_CMD_HELLO]):
                    conn.sendall(struct.pack("<Q", 4 + rpc.RPC_CONN_CAPS_SIZE)
                                 + bytes([rpc.RPC_PROTO_MAJOR, rpc.RPC_PROTO_MINOR, 0, 0])
                                 + bytes(rpc.RPC_CONN_CAPS_SIZE))
                    self.hellos += 1
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def frozen():
    h = FrozenHost()
    yield h
    h.close()


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MOEVIZ_RPC_TIMEOUT": str(TIMEOUT_S), **extra}


@needs_rpc
def _generate(ws_url: str, max_tokens: int, wait: float) -> dict:
    """A websocket run of PROMPT on a fresh connection: its closing message (error or done)."""
    with connect(ws_url, max_size=None, open_timeout=30) as ws:
        ws.recv(timeout=30)
        ws.send(json.dumps({"type": "generate", "text": PROMPT, "max_tokens": max_tokens}))
        while (m := json.loads(ws.recv(timeout=wait)))["type"] not in ("error", "done"):
            pass
    return m


def test_a_frozen_host_at_load_is_one_line_in_seconds(fixture_models, frozen, tmp_path):
    """It takes moeviz's probe and ggml-rpc's HELLO, then never answers the first command."""
    t0 = time.time()
    r = subprocess.run([PY, "-m", "moeviz", "record", "--model", str(fixture_models["llama"]), "--rpc",
                        frozen.endpoint, "--n-gpu-layers", "-1", "--prompt", "hi", "--out", str(tmp_path / "t.json")],
                       capture_output=True, text=True, timeout=120, env=_env())
    took = time.time() - t0
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert frozen.hellos >= 2   # the probe's and ggml-rpc's own
    last = r.stderr.strip().splitlines()[-1]
    assert last == (f"moeviz record: error: --rpc {frozen.endpoint}: the rpc-server stopped answering while moeviz "
                    f"registered it (no answer within {TIMEOUT_S} s, frozen or overloaded); restart it"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and took < 60, took


@needs_rpc
def test_a_frozen_host_mid_run_ends_the_run_and_health_says_so(fixture_models, tmp_path, monkeypatch):
    """kill -STOP on the rpc-server during a long websocket run: the run ends with one line
    within the timeout, cancel is answered, /health reports the server, later runs are
    refused at once, and the web server answers throughout."""
    monkeypatch.setenv("MOEVIZ_RPC_TIMEOUT", str(TIMEOUT_S))
    pair = [RpcServer(), RpcServer()]
    ep = pair[1].endpoint
    try:
        with ServerProcess("--model", fixture_models["llama"], "--n-ctx", "512", "--n-gpu-layers", "-1",
                           "--rpc", f"{pair[0].endpoint},{ep}", "--tensor-split", "1,1",
                           "--data-dir", tmp_path / "runs") as s:
            with connect(s.ws_url, max_size=None, open_timeout=30) as ws:
                ws.recv(timeout=30)
                ws.send(json.dumps({"type": "generate", "text": PROMPT, "max_tokens": 2000, "seed": 3}))
                while (m := json.loads(ws.recv(timeout=60)))["type"] not in ("token", "error", "done"):
                    pass
                assert m["type"] == "token", m
                os.kill(pair[1].proc.pid, signal.SIGSTOP)
                t0 = time.time()
                ws.send(json.dumps({"type": "cancel"}))
                while (m := json.loads(ws.recv(timeout=60)))["type"] not in ("error", "done"):
                    pass
                took = time.time() - t0
            assert took < TIMEOUT_S + 20, took
            line = (f"rpc server {ep} stopped answering during the run (no answer within {TIMEOUT_S} s, "
                    "frozen or overloaded); restart it and moeviz")
            if m["type"] == "done":
                # the cancel came between two decodes: the next run meets the frozen server
                t0 = time.time()
                m = _generate(s.ws_url, 8, 60)
                assert time.time() - t0 < TIMEOUT_S + 20
            assert m == {"type": "error", "message": line} or (
                m["type"] == "error" and "stopped answering" in m["message"] and ep in m["message"]), m
            status, health = _get(s.url + "/health")
            assert status == 503 and ep in health["error"] and "stopped answering" in health["error"], health
            t0 = time.time()
            m = _generate(s.ws_url, 4, 30)
            assert m["type"] == "error" and ep in m["message"] and time.time() - t0 < 10, m
            assert s.proc.poll() is None
            assert "Traceback" not in s.close()
    finally:
        os.kill(pair[1].proc.pid, signal.SIGCONT)
        for p in pair:
            p.stop()


# --- moeviz rpc-server: listening, or one line --------------------------------------------

@needs_rpc
def test_rpc_server_that_cannot_listen_exits_non_zero_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host, line in [
            ("127.0.0.1", f"cannot listen on 127.0.0.1:{port}: the port is in use"),
            ("::1", "--host ::1: llama.cpp's rpc-server listens on IPv4 only (try 127.0.0.1 or 0.0.0.0)"),
            ("my-box", "--host wants an IPv4 address such as 127.0.0.1 or 0.0.0.0, got 'my-box'"),
        ]:
            r = subprocess.run([PY, "-m", "moeviz", "rpc-server", "--host", host, "--port", str(port)],
                               capture_output=True, text=True, timeout=60, env=_env())
            assert r.returncode != 0, (host, r.stderr)
            assert r.stderr.strip().splitlines() == [f"moeviz rpc-server: error: {line}"], r.stderr


@needs_rpc
def test_rpc_server_says_it_listens_once_it_does():
    """--host localhost is 127.0.0.1 (llama.cpp's rpc-server took only IPv4 literals and
    exited 0 on "localhost"); the line saying it listens comes after the socket listens."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "moeviz", "rpc-server", "--host", "localhost", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        while "moeviz: rpc-server on" not in (line := proc.stderr.readline()):
            assert line, "rpc-server exited before it said it listens"
        assert line.startswith(f"moeviz: rpc-server on 127.0.0.1:{port}"), line
        assert rpc.probe(f"127.0.0.1:{port}", timeout=5)[0] == rpc.RPC_PROTO_MAJOR
        proc.send_signal(signal.SIGTERM)   # passed on to llama.cpp's rpc-server: both end
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
