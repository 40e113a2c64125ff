"""The CLI in a real subprocess: info and record on every fixture; one-line errors."""
import json

import pytest
from conftest import run_cli

from moeviz.trace import load


@pytest.mark.parametrize("arch", ["llama", *(pytest.param(a, marks=pytest.mark.slow)   # llama in the fast tier
                                            for a in ("qwen2moe", "deepseek2", "gpt-oss"))])
def test_info_and_record_every_fixture(fixture_models, tmp_path, arch):
    path = fixture_models[arch]
    r = run_cli("info", path, check=True)
    assert arch in r.stdout and "MoE layers" in r.stdout and "active per token" in r.stdout
    assert "--cpu-moe keeps all routed experts in CPU memory" in r.stdout
    info = json.loads(run_cli("info", path, "--json", check=True).stdout)
    assert info["architecture"] == arch and info["is_moe"] and info["active_params"] < info["total_params"]
    out = tmp_path / f"{arch}.moetrace"
    r = run_cli("record", "--model", path, "--prompt", "Hello, world", "--out", out, "--max-tokens", 5,
                "--seed", 3, "--probs", "--capture", "callback", check=True)
    t = load(out)
    assert t.n_tokens == t.n_prompt + 5 or t.finish["reason"] == "eos"
    assert t.probs is not None and t.settings["seed"] == 3 and t.settings["capture"] == "callback"
    assert t.expert_ids.shape[1] == len(info["moe_layers"])


def test_info_json_describes_deepseek_shape(fixture_models):
    info = json.loads(run_cli("info", fixture_models["deepseek2"], "--json", check=True).stdout)
    assert info["moe_layers"] == [1, 2, 3] and info["dense_layers"] == [0]
    assert info["gating"] == "sigmoid" and info["weights_normalized"] is True and info["weights_scale"] == 2.5
    assert info["n_shared_experts"] == 2 and info["n_expert_groups"] == 4 and info["n_group_used"] == 2


def test_prompt_file_with_chat_messages(fixture_models, tmp_path):
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"messages": [{"role": "user", "content": "Translate: the cat"}]}))
    out = tmp_path / "c.json"
    run_cli("record", "-m", fixture_models["llama"], "--prompt-file", pf, "-o", out, "--max-tokens", 2, check=True)
    t = load(out)
    assert t.tokens[0]["text"] == "<|im_start|>" and t.prompt == [{"role": "user", "content": "Translate: the cat"}]


def one_line_error(r, pattern):
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_bad_input_gives_one_line_errors(fixture_models, dense_fixture, tmp_path):
    good = fixture_models["llama"]
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_text("hello")
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "o.json"
    one_line_error(run_cli("record", "-m", tmp_path / "nope.gguf", "--prompt", "x", "-o", out), "model file not found")
    one_line_error(run_cli("record", "-m", not_gguf, "--prompt", "x", "-o", out), "not a GGUF file")
    one_line_error(run_cli("record", "-m", truncated, "--prompt", "x", "-o", out), "truncated GGUF file")
    one_line_error(run_cli("info", truncated), "truncated GGUF file")
    one_line_error(run_cli("record", "-m", dense_fixture, "--prompt", "x", "-o", out), "dense model")
    one_line_error(run_cli("record", "-m", good, "--prompt", "word " * 3000, "-o", out, "--n-ctx", "256"),
                   r"the prompt is \d+ tokens, longer than the context \(256 tokens\)")
    one_line_error(run_cli("record", "-m", good, "--prompt", "x", "-o", out, "--capture", "magic"),
                   "argument --capture: invalid choice: 'magic'")
    one_line_error(run_cli("record", "-m", good, "--prompt", "x", "-o", out, "--temperature", "-2"),
                   "argument --temperature: 'temperature' must be a number from 0 to 10, got -2.0")
    one_line_error(run_cli("record", "-m", good, "--prompt-file", tmp_path / "none.txt", "-o", out),
                   "prompt file not found")
    one_line_error(run_cli("record", "-m", good, "--prompt", "x", "-o", out, "--max-tokens", "ten"),
                   "argument --max-tokens: invalid int value")
    assert not out.exists()


def write_gguf(path, arch, kv, tensors):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    for key, value in kv.items():
        w.add_uint32(f"{arch}.{key}", value)
    for name, shape in tensors.items():
        w.add_tensor(name, np.zeros(shape, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_llama_cpp_load_failures_are_reported_with_its_reason(tmp_path):
    out = tmp_path / "o.json"
    unknown = write_gguf(tmp_path / "u.gguf", "foomoe", {"block_count": 1, "expert_count": 2, "expert_used_count": 1},
                         {"blk.0.ffn_gate_inp.weight": (2, 8)})
    one_line_error(run_cli("record", "-m", unknown, "--prompt", "x", "-o", out),
                   r"llama.cpp could not load .*u.gguf: .*unknown model architecture: 'foomoe'")
    bad_k = write_gguf(tmp_path / "k.gguf", "llama", {"block_count": 1, "expert_count": 2, "expert_used_count": 3},
                       {"blk.0.ffn_gate_inp.weight": (2, 8)})
    one_line_error(run_cli("record", "-m", bad_k, "--prompt", "x", "-o", out),
                   "invalid MoE metadata .*3 experts used per token of 2")


def test_dense_model_info_says_dense(dense_fixture):
    r = run_cli("info", dense_fixture, check=True)
    assert "dense model" in r.stdout
