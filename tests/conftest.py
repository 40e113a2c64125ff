"""What every test shares: the fixture models, loaded engines, run_cli, and the tiers.

Tiers (markers declared in pyproject.toml; `make test-fast` and `make test` pick them):
  fast   `make test-fast`, the edit loop (under 3 minutes on 2 cores): every test without the marks
         below, plus the two marked `smoke` (one real server, one page in Chromium), plus
         node's tests of the page's JS (tests/js/)
  full   `make test` (.ci/run): everything, after `make arch-models`
Marks that keep a test out of the fast tier:
  slow     takes more than a few seconds (set by hand, at the test or its module)
  browser  drives Chromium (tests/browser.py's pytestmark)
  server   starts a server process on loopback: set here on every test whose code, or
           a fixture's it uses, calls tests/serverproc.py's ServerProcess, static_server or
           serve_in_thread
  archgen  needs llama.cpp's model generator (tests/build-arch-models.sh, ~15 min to build
           once, cached in ~/.cache/moeviz/archgen; `make arch-models`): set here on every
           test that takes the `arch_models` fixture
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from moeviz.fixtures import ARCHITECTURES, FixtureSpec, write_fixture  # noqa: E402

PY = sys.executable


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="session")
def fixture_models(fixture_dir) -> dict[str, Path]:
    """One tiny MoE GGUF per fixture architecture, written once per test session."""
    return {arch: write_fixture(fixture_dir / f"{arch}.gguf", arch=arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def dense_fixture(fixture_dir) -> Path:
    return write_fixture(fixture_dir / "dense.gguf", FixtureSpec(arch="llama", n_expert=0, n_expert_used=0))


@pytest.fixture(scope="session")
def llama_fixture(fixture_models) -> Path:
    return fixture_models["llama"]


@pytest.fixture(scope="session")
def engines(fixture_models):
    """Loaded engines per (arch, capture), created on first use and reused."""
    from moeviz.engine import Engine

    cache = {}

    def get(arch: str, capture: str = "callback", **kw):
        key = (arch, capture, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = Engine(fixture_models[arch], n_ctx=kw.pop("n_ctx", 512), capture=capture, **kw)
        return cache[key]

    yield get
    for e in cache.values():
        e.close()


def run_cli(*args, check=False, timeout=120):
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([PY, "-m", "moeviz", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"moeviz {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


def pytest_collection_modifyitems(config, items):
    """The `server` and `archgen` marks, from what a test uses (see the tiers above)."""
    for item in items:
        if "arch_models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.archgen)
        if any(_starts_a_server(f) for f in _functions(item)):
            item.add_marker(pytest.mark.server)


SERVER_CALLS = ("ServerProcess(", "static_server(", "serve_in_thread(")    # tests/serverproc.py


def _functions(item):
    """The test function and every fixture function it uses."""
    yield getattr(item, "function", None)
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        for d in defs:
            yield d.func


_server_starters: dict = {}


def _starts_a_server(fn) -> bool:
    """Whether `fn`'s own code starts a server process (tests/serverproc.py)."""
    if fn is None:
        return False
    if fn not in _server_starters:
        import inspect

        try:
            src = inspect.getsource(fn)
        except (OSError, TypeError):
            src = ""
        _server_starters[fn] = any(call in src for call in SERVER_CALLS)
    return _server_starters[fn]
