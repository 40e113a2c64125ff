"""Every command in README.md works as written, after the two set-up commands.

README's ```sh and ```python blocks run here, in order, in a scratch folder (so what
they write, run.json or site/, lands there), each shell block after README's set-up
block (`. .venv/bin/activate`). A comment on the line right above a block says how it
runs; the markers are machine-readable and kept few:
    <!-- readme-test: setup ... -->    runs before every shell block (activating the venv)
    <!-- readme-test: server ... -->   runs against a real `moeviz serve` of the demo model
                                       (on a free port: README's 8000 replaced)
    <!-- readme-test: skip (why) -->   not run: needs a real model file or the network,
                                       or is the set-up itself
Any other block runs as it is, and must exit 0.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = ROOT / ".venv"
MARKER = re.compile(r"<!--\s*readme-test:\s*(setup|server|skip)\b\s*(.*?)\s*-->")
MAX_SKIPPED = 6          # blocks a newcomer cannot run as written must stay the exception


def blocks(text: str) -> list[dict]:
    """README's fenced blocks: {lang, code, marker, reason, line}."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        above = MARKER.search(lines[start - 1]) if start else None
        out.append({"lang": lang, "code": "\n".join(lines[start + 1: j]) + "\n", "line": start + 1,
                    "marker": above.group(1) if above else None, "reason": above.group(2) if above else ""})
        i = j + 1
    return out


def runnable(text: str) -> list[dict]:
    return [b for b in blocks(text) if b["lang"] in ("sh", "bash", "python")]


def test_blocks_are_marked_sparingly():
    bs = runnable(README.read_text())
    skipped = [b for b in bs if b["marker"] == "skip"]
    assert all(b["reason"].startswith("(") and len(b["reason"]) > 8 for b in skipped), \
        [b["line"] for b in skipped if len(b["reason"]) <= 8]
    assert len(skipped) <= MAX_SKIPPED, [b["line"] for b in skipped]
    assert [b["code"] for b in bs if b["marker"] == "setup"] == [". .venv/bin/activate\n"]
    # blocks run as written here, not only skipped ones: the CLI's and the API's
    assert sum(b["marker"] is None for b in bs) >= 2 and sum(b["marker"] == "server" for b in bs) >= 2
    # no shell block names the venv's binaries: README says to activate it once
    assert not [b["line"] for b in bs if ".venv/bin/moeviz" in b["code"]]


def test_the_markers_are_read():
    text = "x\n<!-- readme-test: skip (needs a model) -->\n```sh\nmoeviz serve -m a.gguf\n```\n```text\nno\n```\n"
    assert blocks(text)[0] == {"lang": "sh", "code": "moeviz serve -m a.gguf\n", "line": 3, "marker": "skip",
                               "reason": "(needs a model)"}
    assert [b["lang"] for b in runnable(text)] == ["sh"]


def _shell(setup: str, code: str, cwd: Path, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"          # a new user's shell: no venv until activated
    script = f"set -eo pipefail\n{setup}\n{code}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def scratch(tmp_path):
    """A folder that looks like the repository root to README's commands (the venv,
    the prompts) and takes what they write."""
    for name in (".venv", "prompts", "moeviz", "docs", "Makefile", "pyproject.toml", "setup.py", "patches", "web"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.slow
def test_readme_commands_run_as_written(scratch):
    if not (VENV / "bin" / "moeviz").exists():
        pytest.skip("needs the set-up's .venv")
    bs = runnable(README.read_text())
    setup = "\n".join(b["code"] for b in bs if b["marker"] == "setup")
    ran = 0
    for b in bs:
        if b["marker"] is not None:
            continue
        if b["lang"] == "python":
            out = subprocess.run([str(VENV / "bin" / "python"), "-c", b["code"]], cwd=scratch,
                                 capture_output=True, text=True, timeout=300)
        else:
            out = _shell(setup, b["code"], scratch)
        assert out.returncode == 0, f"README line {b['line']}:\n{b['code']}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        ran += 1
    assert ran >= 2
    # what they say they write is there: the trace, the site, the what-if pair
    assert (scratch / "run.json").is_file() and (scratch / "site" / "index.html").is_file()
    assert (scratch / "a.json").is_file() and (scratch / "b.json").is_file()


@pytest.mark.slow
def test_readme_api_blocks_against_a_server(scratch, tmp_path_factory):
    if not (VENV / "bin" / "moeviz").exists():
        pytest.skip("needs the set-up's .venv")
    bs = [b for b in runnable(README.read_text()) if b["marker"] == "server"]
    setup = "\n".join(b["code"] for b in runnable(README.read_text()) if b["marker"] == "setup")
    with ServerProcess("--data-dir", tmp_path_factory.mktemp("runs")) as server:
        for b in bs:
            code = b["code"].replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
            assert code != b["code"] or "8000" not in b["code"]
            if b["lang"] == "python":
                out = subprocess.run([sys.executable, "-c", code], cwd=scratch, capture_output=True, text=True,
                                     timeout=120)
            else:
                out = _shell(setup, code, scratch, timeout=120)
            assert out.returncode == 0, f"README line {b['line']}:\n{code}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
            assert out.stdout.strip(), f"README line {b['line']} printed nothing"
