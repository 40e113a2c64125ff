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
