"""`read_model_info` reports routing as each architecture's llama.cpp graph computes it.

Two kinds of checks:
- small GGUFs written here with gguf-py (metadata plus a router tensor per MoE layer,
  which is all read_model_info looks at) give the gating, normalization, scale,
  selection bias, groups and MoE layers of `gguf_archs.ARCHS`, including the cases where
  the answer depends on the metadata (defaults, required keys, leading dense blocks,
  interleave steps, MTP layers, per-layer FFN widths);
- the table itself is checked against the vendored llama.cpp source in the cached
  llama-cpp-python sdist (skipped without it): every build_moe_ffn call is cited, each
  entry's literals / metadata keys are the call's arguments and the loader's reads.
"""
from __future__ import annotations

import os
import re
import tarfile
from functools import lru_cache
from pathlib import Path

import gguf
import numpy as np
import pytest

from moeviz.gguf_archs import ARCHS, NO_DEFAULT, REQUIRED, FromKey
from moeviz.gguf_info import ModelFileError, describe, read_model_info

N_EMBD, N_EXPERT = 8, 4


def write_gguf(path: Path, arch: str, kv: dict, routers=(), tensors=(), n_layer=4, n_expert=N_EXPERT,
               used=2, vocab: list[str] | None = None) -> Path:
    """A GGUF with `<arch>.<key>` metadata, router tensors on `routers` and other named tensors."""
    w = gguf.GGUFWriter(str(path), arch)
    meta = {"block_count": n_layer, "embedding_length": N_EMBD, "context_length": 256,
            "expert_count": n_expert, "expert_used_count": used, **kv}
    for key, v in meta.items():
        if v is None:
            continue
        k = f"{arch}.{key}"
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_array(k, list(v))
    if vocab is not None:
        w.add_token_list(vocab)
    for i in routers:
        w.add_tensor(f"blk.{i}.ffn_gate_inp.weight", np.ones((n_expert, N_EMBD), np.float32))
    for name in tensors:
        w.add_tensor(name, np.zeros((n_expert,), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def info(tmp_path):
    def make(arch, kv=None, routers=range(4), **kw):
        return read_model_info(write_gguf(tmp_path / f"{arch}.gguf", arch, kv or {}, routers, **kw))
    return make


# Metadata that an arch's graph ignores: reported settings must not follow it.
MISLEADING = {"expert_gating_func": 3, "expert_weights_norm": False, "expert_weights_scale": 7.0}


# arch -> (extra metadata, router layers, gating, normalized, scale, MoE layers). The archs
# issue 11 lists as wrong or unknown before, and others whose rule is metadata-dependent.
CASES = {
    # llama4.cpp:219-229 (sigmoid, no renormalization) and llama4.cpp:62 (every 2nd layer)
    "llama4": ({"interleave_moe_layer_step": 2, **MISLEADING}, [1, 3], "sigmoid", False, 1.0, [1, 3]),
    "phimoe": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "qwen3next": ({"nextn_predict_layers": 1, **MISLEADING}, range(4), "softmax", True, 1.0, [0, 1, 2]),
    "minimax-m2": ({"expert_gating_func": 2, "expert_weights_norm": False, "expert_weights_scale": 7.0},
                   range(4), "sigmoid", True, 1.0, [0, 1, 2, 3]),
    "lfm2moe": ({"leading_dense_block_count": 2, "expert_gating_func": 2, "expert_weights_norm": False,
                 "expert_weights_scale": 7.0}, [2, 3], "sigmoid", True, 1.0, [2, 3]),
    "smallthinker": ({"expert_gating_func": 1, "expert_weights_scale": 7.0}, range(4), "softmax", True, 1.0,
                     [0, 1, 2, 3]),
    "grok": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "arctic": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "mellum": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "granitehybrid": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    # DeepSeek V1: no renormalization (deepseek.cpp:152), but the scale key is read (deepseek.cpp:8)
    "deepseek": ({"leading_dense_block_count": 1, "expert_weights_norm": True, "expert_weights_scale": 1.5},
                 [1, 2, 3], "softmax", False, 1.5, [1, 2, 3]),
    # jamba: MoE where the router tensor is (jamba.cpp:88), never renormalized (jamba.cpp:170)
    "jamba": (MISLEADING, [1, 3], "softmax", False, 1.0, [1, 3]),
    "olmoe": (MISLEADING, range(4), "softmax", False, 1.0, [0, 1, 2, 3]),
    "qwen2moe": (MISLEADING, range(4), "softmax", False, 1.0, [0, 1, 2, 3]),
    "qwen3moe": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "ernie4_5-moe": ({"interleave_moe_layer_step": 1, **MISLEADING}, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "hunyuan-moe": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
    "mimo2": (MISLEADING, [0, 2], "sigmoid", True, 1.0, [0, 2]),
    "gemma4": (MISLEADING, [1, 2], "softmax", True, 1.0, [1, 2]),
    "gpt-oss": (MISLEADING, range(4), "softmax_weight", True, 1.0, [0, 1, 2, 3]),
    "kimi-linear": ({"expert_gating_func": 2, "expert_weights_norm": False, "expert_weights_scale": 2.5,
                     "leading_dense_block_count": 1}, [1, 2, 3], "sigmoid", True, 2.5, [1, 2, 3]),
    # settings from metadata
    "glm4moe": ({"leading_dense_block_count": 1, "nextn_predict_layers": 1, "expert_weights_norm": True,
                 "expert_weights_scale": 2.5}, [1, 2, 3], "sigmoid", True, 2.5, [1, 2]),
    "dots1": ({"expert_gating_func": 1, "leading_dense_block_count": 1}, [1, 2, 3], "softmax", False, 1.0, [1, 2, 3]),
    "nemotron_h_moe": ({"feed_forward_length": [0, 16, 0, 16], "expert_weights_norm": True,
                        "expert_weights_scale": 2.5}, [1, 3], "sigmoid", True, 2.5, [1, 3]),
    "nomic-bert-moe": ({"moe_every_n_layers": 2, **MISLEADING}, [1, 3], "softmax", False, 1.0, [1, 3]),
    "grovemoe": (MISLEADING, range(4), "softmax", True, 1.0, [0, 1, 2, 3]),
}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_arch_settings(info, arch):
    kv, routers, gating, norm, scale, moe = CASES[arch]
    i = info(arch, kv, routers)
    assert (i.gating, i.weights_normalized, i.weights_scale) == (gating, norm, scale)
    assert i.moe_layers == moe and i.is_moe and i.known_architecture and i.load_error is None
    assert i.dense_layers == [layer for layer in range(4 - len(i.nextn_layers)) if layer not in moe]


def test_mtp_layers_are_not_moe_layers(info):
    i = info("qwen3next", {"nextn_predict_layers": 1})
    assert i.nextn_layers == [3] and 3 not in i.moe_layers and 3 not in i.dense_layers
    assert "MTP layers 3 (not run by the main graph)" in describe(i)
    # deepseek4.cpp:20-26: a trunk-only file (no blk.<main>.nextn.eh_proj) runs every layer
    ds4 = {"expert_gating_func": 4, "expert_weights_norm": True, "expert_weights_scale": 1.5,
           "hash_layer_count": 0, "nextn_predict_layers": 1}
    assert info("deepseek4", ds4).moe_layers == [0, 1, 2, 3]
    assert info("deepseek4", ds4, tensors=["blk.3.nextn.eh_proj.weight"]).moe_layers == [0, 1, 2]


def test_gating_defaults_and_required_keys(info):
    # afmoe.cpp:26-29, cohere2moe.cpp:23-25, glm4-moe.cpp:16-18, step35.cpp:19-21: absent or 0 -> sigmoid
    assert info("afmoe", {}).gating == "sigmoid"
    assert info("afmoe", {"expert_gating_func": 0}).gating == "sigmoid"
    assert info("afmoe", {"expert_gating_func": 1}).gating == "softmax"
    assert info("step35", {}, routers=[1, 2]).moe_layers == [1, 2]
    # required (bailingmoe2.cpp:11, lfm2moe.cpp:10): llama.cpp refuses the file without it
    i = info("lfm2moe", {})
    assert i.gating is None and "lfm2moe.expert_gating_func is missing" in i.load_error
    assert "refuses" in i.load_error and "problem" in describe(i)
    # read but with no default (minimax-m2.cpp:6, smallthinker.cpp:21, dots1.cpp:10, hy-v4.cpp:35):
    # the gating stays NONE and build_moe_ffn aborts
    for arch in ("minimax-m2", "smallthinker", "dots1"):
        i = info(arch, {})
        assert i.gating is None and "aborts" in i.load_error, arch
    assert "aborts" in info("minimax-m2", {"expert_gating_func": 0}).load_error
    # deepseek4.cpp:63-66: anything but sqrt_softplus is refused
    i = info("deepseek4", {"expert_gating_func": 2, "expert_weights_norm": True, "expert_weights_scale": 1.0,
                           "hash_layer_count": 0})
    assert i.gating is None and "needs expert_gating_func sqrt_softplus" in i.load_error
    i = info("deepseek4", {"expert_gating_func": 4, "hash_layer_count": 0})
    assert i.gating == "sqrt_softplus" and "expert_weights_norm is missing" in i.load_error


def test_deepseek2_gating_default(info):
    # deepseek2.cpp:23-31: softmax for old DeepSeek V2 files, sigmoid for GLM 4.7 Lite
    assert info("deepseek2", {}).gating == "softmax"
    assert info("deepseek2", {"expert_gating_func": 2}).gating == "sigmoid"
    glm = {"vocab_size": 154880, "nextn_predict_layers": 1}
    assert info("deepseek2", glm, routers=range(48), n_layer=48).gating == "sigmoid"   # 47 main layers
    assert info("deepseek2", {"vocab_size": 154880}, routers=range(50), n_layer=50).gating == "softmax"
    assert info("mistral4", glm, routers=range(48), n_layer=48).gating == "sigmoid"
    assert info("deepseek2-ocr", glm, routers=range(48), n_layer=48).gating == "softmax"
    # no key: norm off and no scaling (hparams defaults)
    i = info("deepseek2", {})
    assert i.weights_normalized is False and i.weights_scale == 1.0


def test_layer_rules(info):
    # ernie4-5-moe.cpp:63-64
    assert info("ernie4_5-moe", {"leading_dense_block_count": 1, "interleave_moe_layer_step": 2},
                n_layer=6, routers=range(1, 6)).moe_layers == [1, 3, 5]
    assert "interleave_moe_layer_step is missing" in info("ernie4_5-moe", {}).load_error
    assert "interleave_moe_layer_step is missing" in info("llama4", {}).load_error
    # leading_dense_block_count required (bailingmoe3.cpp:22, cohere2moe.cpp:15, dots3note.cpp:15, laguna.cpp:11)
    for arch in ("bailingmoe3", "cohere2moe", "laguna"):
        i = info(arch, {"expert_gating_func": 2})
        assert i.moe_layers == [] and "leading_dense_block_count is missing" in i.load_error, arch
    assert info("laguna", {"leading_dense_block_count": 1}).moe_layers == [1, 2, 3]
    assert info("exaone-moe", {"expert_gating_func": 2, "leading_dense_block_count": 2}).moe_layers == [2, 3]
    # granite / llama / mistral3 route in every layer once there are experts; none without
    assert info("granite", {}).moe_layers == [0, 1, 2, 3]
    assert info("llama", {}, routers=(), n_expert=0, used=0).moe_layers == []
    # refact loads experts but its graph never calls build_moe_ffn (refact.cpp:118-136)
    i = info("refact", {})
    assert i.moe_layers == [] and not i.is_moe and "dense model" in describe(i)


def test_selection_bias_needs_the_tensor_and_an_arch_that_uses_it(info):
    bias = [f"blk.{i}.exp_probs_b.bias" for i in range(4)]
    assert info("minimax-m2", {"expert_gating_func": 2}, tensors=bias).selection_bias
    assert not info("minimax-m2", {"expert_gating_func": 2}).selection_bias
    # minimax-01.cpp:447 passes ffn_exp_probs_b, which its loader never creates
    assert not info("minimax-01", {}, tensors=bias).selection_bias
    # hy_v3 names it without ".bias" (hy-v3.cpp:68)
    assert info("hy_v3", {}, tensors=[f"blk.{i}.exp_probs_b" for i in range(4)]).selection_bias


def test_groups_are_read_for_every_arch(info):
    # llama-model.cpp:1334-1335 reads them for all archs; llama-graph.cpp:2097 applies them to any
    i = info("qwen3moe", {"expert_group_count": 2, "expert_group_used_count": 1})
    assert (i.n_expert_groups, i.n_group_used) == (2, 1)


@pytest.mark.parametrize("kv, used", [({"expert_group_count": 3, "expert_group_used_count": 1}, 2),   # 4 % 3
                                      ({"expert_group_count": 2, "expert_group_used_count": 2}, 2),   # all used
                                      ({"expert_group_count": 2}, 2),                                 # none used
                                      ({}, 0)])                                                      # top-0
def test_metadata_llama_cpp_asserts_on_is_refused(info, kv, used):
    # llama-model.cpp:1359-1374: GGML_ASSERTs that abort the process
    with pytest.raises(ModelFileError, match="invalid MoE metadata"):
        info("qwen3moe", kv, used=used)


def test_per_layer_top_k(info):
    # nemotron-h.cpp:309 passes n_expert_used(il); expert_used_count may be an array (Puzzle models)
    i = info("nemotron_h", {"feed_forward_length": [0, 16, 0, 16]}, routers=[1, 3], used=[2, 2, 2, 3])
    assert i.moe_layers == [1, 3] and i.n_expert_used == 3 and i.n_expert_used_per_layer == [2, 3]
    # other graphs use layer 0's value everywhere
    i = info("qwen3moe", {}, used=[2, 3, 3, 3])
    assert i.n_expert_used == 2 and i.n_expert_used_per_layer is None


def test_non_causal_and_two_call_archs(info):
    for arch in ("llada-moe", "rnd1"):
        i = info(arch, {})
        assert i.is_moe and not i.causal and i.decoding == "diffusion"
        assert "diffusion model" in describe(i)
    i = info("nomic-bert-moe", {"moe_every_n_layers": 2}, routers=[1, 3])
    assert not i.causal and i.decoding == "embedding"
    assert info("qwen3moe", {}).causal
    g = info("grovemoe", {})
    assert g.moe_calls_per_layer == 2 and any("chunk experts" in n for n in g.routing_notes)
    ds4 = info("deepseek4", {"expert_gating_func": 4, "expert_weights_norm": True, "expert_weights_scale": 1.5,
                             "hash_layer_count": 2})
    assert ds4.routing_notes and ds4.routing_notes[0].startswith("layers 0, 1 pick experts by token id")


def test_unknown_architecture_keeps_the_metadata_fallback(info):
    i = info("somefuturemoe", {"expert_gating_func": 2, "expert_weights_scale": 2.0}, routers=[1, 2])
    assert not i.known_architecture and i.moe_layers == [1, 2] and i.gating == "sigmoid"
    assert i.weights_normalized is None and i.weights_scale == 2.0
    assert info("somefuturemoe", {"expert_weights_norm": True}).weights_normalized is True


def test_json_keeps_its_keys_and_adds_the_new_ones(info):
    d = info("llama4", {"interleave_moe_layer_step": 2}, routers=[1, 3]).to_json()
    for key in ("moe_layers", "dense_layers", "n_shared_experts", "gating", "weights_normalized", "weights_scale",
                "n_expert_groups", "n_group_used", "is_moe", "has_chat_template", "selection_bias", "causal",
                "decoding", "nextn_layers", "moe_calls_per_layer", "load_error", "routing_notes"):
        assert key in d, key


# The table against the vendored source -----------------------------------------------

VERSION = "0.3.36"
SRC = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/src/"


def _sdist() -> Path:
    cache = os.environ.get("MOEVIZ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "moeviz")
    return Path(cache) / "sdist" / f"llama_cpp_python-{VERSION}.tar.gz"


@lru_cache(maxsize=1)
def _sources() -> dict[str, str]:
    out = {}
    with tarfile.open(_sdist()) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.startswith(SRC) and m.name.endswith((".cpp", ".h")):
                out[m.name[len(SRC):]] = tf.extractfile(m).read().decode()
    return out


NEEDS_SDIST = pytest.mark.skipif(not _sdist().is_file(), reason=f"the llama-cpp-python sdist is not at {_sdist()}")
CALL = re.compile(r"\bbuild_moe_ffn\(")


def _model(file: str) -> list[str]:
    return _sources()["models/" + file].splitlines()


def _call_args(ref: str) -> list[str]:
    """The top-level arguments of the build_moe_ffn call at `file:line`."""
    file, line = ref.split(":")
    lines = _model(file)
    text = re.sub(r"//[^\n]*", "", "\n".join(lines[int(line) - 1:int(line) + 40]))
    start = CALL.search(text)
    assert start and start.start() < len(lines[int(line) - 1]), f"{ref} is not a build_moe_ffn call"
    args, depth, cur = [], 0, ""
    for ch in text[start.end():]:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return args + [cur.strip()]


def _reads(hparams_file: str, kv: str) -> str | None:
    """The loader's line reading LLM_KV_<kv>, if any."""
    src = _sources()["models/" + hparams_file]
    body = src[src.index("::load_arch_hparams"):]
    m = re.search(rf"get_key(_or_arr)?\(LLM_KV_{kv},[^;]*;", body)
    return m.group(0) if m else None


def _check_key(spec_value, hparams_file: str, kv: str, what: str):
    line = _reads(hparams_file, kv)
    assert line, f"{what}: {hparams_file} does not read LLM_KV_{kv}"
    required = not re.search(r",\s*(false|0)\s*\)", line)
    assert required == (spec_value.default is REQUIRED), f"{what}: {line!r} vs default {spec_value.default!r}"


@NEEDS_SDIST
def test_every_build_moe_ffn_call_is_in_the_table():
    calls = set()
    for name, text in _sources().items():
        if name.startswith("models/"):
            for n, line in enumerate(text.splitlines(), 1):
                if CALL.search(line) and not line.strip().startswith("//"):
                    calls.add(f"{name[len('models/'):]}:{n}")
    cited = {s.src for s in ARCHS.values() if s.layers.kind != "never"}
    cited |= {c for s in ARCHS.values() for c in s.other_calls}
    assert calls == cited, (f"not in ARCHS: {sorted(calls - cited)}; cited but not a call: {sorted(cited - calls)}")
    names = set(re.findall(r'\{ LLM_ARCH_\w+,\s*"([^"]+)"\s*\}', _sources()["llama-arch.cpp"]))
    assert set(ARCHS) <= names, f"not GGUF architecture names: {sorted(set(ARCHS) - names)}"


GATING_ENUM = {"softmax": "SOFTMAX", "sigmoid": "SIGMOID", "softmax_weight": "SOFTMAX_WEIGHT",
               "sqrt_softplus": "SQRT_SOFTPLUS"}


@NEEDS_SDIST
@pytest.mark.parametrize("arch", sorted(a for a, s in ARCHS.items() if s.layers.kind != "never"))
def test_table_entry_matches_the_source(arch):
    s = ARCHS[arch]
    args = _call_args(s.src)
    t = next(i for i, a in enumerate(args) if a.startswith("LLM_FFN_"))
    bias, norm, scale, gating = args[t - 3], args[t + 1], args[t + 2], args[t + 3]
    loader = _sources()["models/" + s.hparams]
    # gating
    if isinstance(s.gating, FromKey):
        assert "hparams.expert_gating_func" in gating, (arch, gating)
        _check_key(s.gating, s.hparams, "EXPERT_GATING_FUNC", f"{arch} gating")
        replaces_none = "expert_gating_func == LLAMA_EXPERT_GATING_FUNC_TYPE_NONE" in loader
        assert replaces_none == s.gating.none_is_default, arch
        assert (s.gating.default is NO_DEFAULT) == (not replaces_none and s.gating.default is not REQUIRED), arch
        if s.gating.only:
            assert f"!= LLAMA_EXPERT_GATING_FUNC_TYPE_{GATING_ENUM[s.gating.only]}" in loader, arch
    else:
        assert gating == f"LLAMA_EXPERT_GATING_FUNC_TYPE_{GATING_ENUM[s.gating]}", (arch, gating)
    # norm_w
    if isinstance(s.norm, FromKey):
        assert norm == "hparams.expert_weights_norm", (arch, norm)
        _check_key(s.norm, s.hparams, "EXPERT_WEIGHTS_NORM", f"{arch} norm")
    else:
        assert norm == ("true" if s.norm else "false"), (arch, norm)
    # w_scale: a literal, or hparams.expert_weights_scale that is read (FromKey) or never read (1.0)
    if isinstance(s.scale, FromKey):
        assert scale == "hparams.expert_weights_scale", (arch, scale)
        _check_key(s.scale, s.hparams, "EXPERT_WEIGHTS_SCALE", f"{arch} scale")
    elif scale == "hparams.expert_weights_scale":
        assert s.scale == 1.0 and _reads(s.hparams, "EXPERT_WEIGHTS_SCALE") is None, arch
    else:
        assert float(scale.rstrip("f")) == s.scale, (arch, scale)
    # exp_probs_b: passed, and loaded (required or optional)
    creates = [ln for ln in loader.splitlines() if re.search(r"ffn_exp_probs_b\s*=\s*create_tensor", ln)]
    if s.bias == "none":
        assert bias == "nullptr" or not creates, (arch, bias)
    else:
        assert bias != "nullptr" and creates, (arch, bias)
        assert all(("TENSOR_NOT_REQUIRED" in ln) == (s.bias == "optional") for ln in creates), (arch, creates)
    # the keys the layer rule reads
    if s.layers.kind in ("dense_lead", "ernie"):
        line = _reads(s.hparams, "LEADING_DENSE_BLOCK_COUNT")
        assert line and (not re.search(r",\s*false\s*\)", line)) == (s.layers.default is REQUIRED), (arch, line)
    if s.layers.kind in ("ernie", "step"):
        assert _reads(s.hparams, "INTERLEAVE_MOE_LAYER_STEP"), arch
    if s.layers.kind == "every_n":
        assert _reads(s.hparams, "MOE_EVERY_N_LAYERS"), arch
    if s.per_layer_k:
        assert "n_expert_used(il)" in args[t - 1], arch
