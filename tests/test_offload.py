"""--cpu-moe / --n-cpu-moe: the overrides reach llama.cpp's loader and match exactly the
routed-expert tensors; routing capture is unchanged with offload on."""
import re

import numpy as np
import pytest
from test_capture import record

from moeviz.llama.log import llama_log
from moeviz.engine import Engine, SettingsError

OVERRIDE = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")


def overridden(model, **kw):
    log = llama_log()
    start = log.mark()
    e = Engine(model, n_ctx=256, capture="callback", **kw)
    lines = log.since(start)
    names = {m.group(1): m.group(2) for _, line in lines if (m := OVERRIDE.search(line))}
    return e, names


@pytest.mark.parametrize("arch", ["llama", "deepseek2", "gpt-oss"])
def test_cpu_moe_overrides_every_expert_tensor_and_nothing_else(fixture_models, arch):
    import gguf

    expert = {t.name for t in gguf.GGUFReader(fixture_models[arch]).tensors
              if re.search(r"\.ffn_(up|down|gate|gate_up)_exps\.", t.name)}
    e, names = overridden(fixture_models[arch], cpu_moe=True)
    try:
        assert set(names) == expert and expert
        assert set(names.values()) == {"CPU"} or all(v.startswith("CPU") for v in names.values())
        plain = Engine(fixture_models[arch], n_ctx=256, capture="callback")
        try:
            a, b = record(plain), record(e)
            np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
            np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)
        finally:
            plain.close()
    finally:
        e.close()


def test_n_cpu_moe_takes_the_first_layers(fixture_models):
    e, names = overridden(fixture_models["llama"], n_cpu_moe=2)
    e.close()
    layers = {int(n.split(".")[1]) for n in names}
    assert layers == {0, 1} and len(names) == 6     # gate, up, down of layers 0 and 1


def test_no_overrides_by_default(fixture_models):
    e, names = overridden(fixture_models["llama"])
    e.close()
    assert names == {}


def test_negative_n_cpu_moe_is_refused(fixture_models):
    with pytest.raises(SettingsError, match="--n-cpu-moe must be zero or more"):
        Engine(fixture_models["llama"], n_cpu_moe=-1)


def test_one_copy_of_each_ggml_library(fixture_models):
    """The wheel holds libggml-base.so, .so.0 and .so.0.x as separate files; libllama links
    the .so.0. --cpu-moe hands the loader ggml's CPU buffer type, the callback reads tensors
    with ggml_backend_tensor_get and the abort hook sets ggml's callback: each through
    libllama's own copy, never a second one (its own globals, its own buffer type address)."""
    import subprocess
    import sys

    code = f"""
from moeviz.engine import Engine, SamplingSettings
e = Engine({str(fixture_models["qwen2moe"])!r}, n_ctx=256, cpu_moe=True, capture="callback")
list(e.generate("hello", SamplingSettings(max_tokens=2)))
maps = open("/proc/self/maps").read().splitlines()
print(sorted({{l.split()[-1] for l in maps if "libggml" in l or "libllama" in l}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    files = eval(out.strip().splitlines()[-1])
    names = [f.rsplit("/", 1)[1] for f in files]
    base = [n for n in names if n.startswith("libggml-base")]
    assert base == ["libggml-base.so.0"], names
    assert len({n.split(".so")[0] for n in names}) == len(names), names   # no library twice
