"""What a newcomer meets on the command line (issue 24): a second `serve` on a busy port
is one line naming the port and exit status 1, before it claims that the page shows the
model loading."""
import socket
import subprocess
import sys

from conftest import ROOT


def test_serve_on_a_busy_port_is_one_line_naming_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "moeviz", "serve", "--port", str(port)], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.strip() == f"moeviz serve: error: port {port} is already in use on 127.0.0.1: " \
                               "stop what uses it, or pass --port with another"
    assert "Errno" not in r.stderr and "shows the progress" not in r.stdout + r.stderr
