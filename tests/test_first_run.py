"""What a newcomer meets on the command line (issue 24): a second `serve` on a busy port
is one line naming the port and exit status 1, before it claims that the page shows the
model loading."""
import socket
import subprocess
import sys

import pytest

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


@pytest.mark.slow
def test_export_lists_every_skipped_prompt_and_counts_runs(tmp_path):
    from moeviz.prompts import DEFAULT_DIR, load_prompts, suits

    library = list(load_prompts(DEFAULT_DIR).values())
    skipped = [p for p in library if not suits(p, "demo")]
    assert skipped and len(skipped) < len(library)        # the bundled library has both kinds
    r = subprocess.run([sys.executable, "-m", "moeviz", "export", "--out", str(tmp_path / "site"), "--max-tokens", "2"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for p in skipped:
        assert f"moeviz: skipped prompt {p.name}: written for {' and '.join(p.models)} models, not the demo model" \
            in lines, p.name
    n = len(library) - len(skipped)
    assert f"moeviz: recording {n} of {len(library)} prompts ({len(skipped)} skipped)" in lines
    assert f"with {n} runs to" in r.stderr
    one = subprocess.run([sys.executable, "-m", "moeviz", "export", "--out", str(tmp_path / "one"),
                          str(next((tmp_path / "site" / "runs").glob("*.moetrace")))],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert one.returncode == 0 and "with 1 run to" in one.stderr, one.stderr


@pytest.mark.slow
def test_record_past_the_trained_context_warns_in_one_line(tmp_path):
    # the demo model was trained on 512-token sequences (its GGUF's context length)
    def record(n):
        return subprocess.run([sys.executable, "-m", "moeviz", "record", "--prompt", "def f", "--max-tokens", str(n),
                               "--temperature", "0", "--out", str(tmp_path / f"{n}.json")],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
    over, under = record(520), record(8)
    assert over.returncode == 0 and under.returncode == 0, over.stderr + under.stderr
    warnings = [line for line in over.stderr.splitlines() if "warning" in line]
    assert warnings == ["moeviz record: warning: --max-tokens 520 goes past the 512 tokens moeviz-demo-moe was "
                        "trained on; what it generates past them is unreliable"]
    assert "warning" not in under.stderr
