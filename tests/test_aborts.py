"""Issue 21 finding 1: a top-k override near n_expert aborted the process
(`record --experts-per-token 60` on the 64-expert demo model, exit 134, nothing logged;
one websocket message took a server and every client with it). llama.cpp reserved its
scheduler for the model's own top-k (patches/0040-moe-topk-graph-size.patch sizes it for
the k in use), and moeviz's abort callback swallowed ggml's message (moeviz/llama/abort.py
now writes it to stderr before the process dies).

Every value 1..n_expert runs, alone and with the most masking allowed, on every fixture
architecture and the demo model, with both capture backends (tests/intervention_sweep.py,
in a subprocess so that an abort fails the test with its text)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from test_archs import ARCHS, NATIVE, arch_models, model_path  # noqa: F401 - arch_models: a fixture

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "tests" / "intervention_sweep.py"


def run_sweep(paths, timeout=900) -> list[dict]:
    r = subprocess.run([sys.executable, str(SWEEP), *map(str, paths)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-1500:]}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def check_sweep(results: list[dict], token_routed=()) -> None:
    for res in results:
        assert not res["bad"], (res["model"], res["capture"], res["bad"][:3])
        if Path(res["model"]).name in token_routed:
            assert res["refused"] and all("by token id" in v for v in res["refused"].values()), res["refused"]
        else:
            assert not res["refused"], (res["model"], res["capture"], res["refused"])


def test_abort_text_reaches_the_log():
    """An abort outside a guarded call still kills the process (ggml's contract), but its
    assert line is on stderr, without the build's paths: with moeviz's callback installed
    ggml printed nothing."""
    code = ("import ctypes; from moeviz.llama import abort; from moeviz.llama.lib import linked_library_path\n"
            "abort.run_guarded(lambda: None)\n"   # installs the callback, as loading a model does
            "lib = ctypes.CDLL(str(linked_library_path('ggml-base')))\n"
            "lib.ggml_abort(b'/build/deep/ggml-backend.cpp', 1993, b'GGML_ASSERT(%s) failed', b'hash_set.size >= 9')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == -6, (r.returncode, r.stderr[-500:])
    assert "ggml-backend.cpp:1993: GGML_ASSERT(hash_set.size >= 9) failed" in r.stderr, r.stderr[-500:]
    assert "/build/deep" not in r.stderr


def test_an_abort_inside_a_guarded_call_raises_the_callers_own_error():
    """llama.cpp asserting inside run_guarded (a model load, a context's graph) parks that
    thread and raises the error kind the caller names, with the assert line: the model
    loader's ModelLoadError, not a LlamaAborted it would have to catch and re-word."""
    import ctypes

    from moeviz.llama import abort
    from moeviz.llama.lib import linked_library_path

    class Refused(Exception):
        pass

    lib = ctypes.CDLL(str(linked_library_path("ggml-base")))
    with pytest.raises(Refused) as e:
        abort.run_guarded(lib.ggml_abort, b"/build/deep/llama-model.cpp", 77, b"GGML_ASSERT(%s) failed",
                          b"n_expert > 0", aborted=lambda line: Refused(f"cannot load: {line}"))
    assert "llama-model.cpp:77: GGML_ASSERT(n_expert > 0) failed" in str(e.value) and "/build/deep" not in str(e.value)
    with pytest.raises(abort.LlamaAborted):      # the default kind
        abort.run_guarded(lib.ggml_abort, b"x.cpp", 1, b"GGML_ASSERT(%s) failed", b"0")


@pytest.mark.slow
def test_every_top_k_on_the_demo_model_records(tmp_path):
    """The probe's case: record --experts-per-token K for K = 57..64 aborted (exit 134)."""
    for k in (57, 64):
        out = tmp_path / f"k{k}.json"
        r = run_cli("record", "--prompt", "def f(x):", "--max-tokens", 3, "--experts-per-token", k, "-o", out)
        assert r.returncode == 0, (k, r.returncode, r.stderr[-800:])
        assert json.loads(out.read_text())["settings"]["experts_per_token"] == k


@pytest.mark.slow     # every top-k, masked and not, both backends, on 6 models: minutes
def test_every_top_k_on_the_fixture_architectures(fixture_models):
    from moeviz.demo import default_model_path

    check_sweep(run_sweep([*fixture_models.values(), default_model_path()]))


@pytest.mark.slow
def test_every_top_k_on_every_llama_cpp_architecture(arch_models):
    """llama.cpp's own random model of each MoE architecture (8 experts, top-3), native
    and callback capture: 1..8 experts, alone and with all but k masked."""
    from moeviz.gguf_info import read_model_info

    paths = [model_path(arch_models, a) for a, how in sorted(ARCHS.items()) if how == NATIVE]
    token_routed = {p.name for p in paths if read_model_info(p).token_routed_layers}
    check_sweep(run_sweep(paths, timeout=1800), token_routed)
