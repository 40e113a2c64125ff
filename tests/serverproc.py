"""A real `moeviz serve` subprocess on a free loopback port, for tests and benches; and a
plain static file server over an exported site."""
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args, timeout=60):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "moeviz", "serve", "--port", str(self.port), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        # The server listens at once and /health answers 503 while the model loads; it is
        # up when /health answers 200. Its output up to the "serving" banner is kept.
        self.lines = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moeviz serve exited: {''.join(self.lines)}{self.proc.stdout.read()}")
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.close()
            raise RuntimeError("moeviz serve did not come up")
        while not self.lines or not self.lines[-1].startswith("moeviz: serving"):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"moeviz serve printed no banner: {''.join(self.lines)}")
            self.lines.append(line)
        self.banner = self.lines[-1]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def close(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def banner_url(banner: str) -> str | None:
    m = re.search(r"at (http://\S+)", banner)
    return m.group(1) if m else None


@contextlib.contextmanager
def static_server(site):
    """A plain static file server over an exported site, on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(site)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def serve_in_thread(app, **config):
    """A real uvicorn server over an ASGI app in this process, on a free loopback port, in
    a thread (for apps a test holds in a state of its own making). Yields its URL; on exit
    uvicorn shuts down (lifespan included) and the thread is joined."""
    import threading  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=60)
