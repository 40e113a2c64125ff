"""Every MoE architecture in the vendored llama.cpp, on llama.cpp's own random models.

The models come from llama.cpp's generator (`tests/test-llama-archs.cpp -o DIR`, built
by tests/build-arch-models.sh): valid random weights for each architecture, with the
shapes llama.cpp's loader expects. For each: llama.cpp loads it, `moeviz info` sees
its MoE layers, native capture equals the eval callback exactly (expert ids, gate
weights, router probabilities) on prompt and generated tokens across ubatches, and
the gating / normalization / scale that `moeviz info` reports reproduce the captured
weights from the captured probabilities. Architectures that cannot be decoded left to
right are refused with one line.

`ARCHS` is the list the README's architecture table is generated from
(`python tests/test_archs.py --readme` rewrites it; a test checks it is current).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

NATIVE, DIFFUSION, DENSE = "native", "diffusion", "dense"
# arch (GGUF name) -> how moeviz records it. NATIVE: native capture, checked equal to the
# callback; DIFFUSION and DENSE are refused with one line that says so.
ARCHS: dict[str, str] = {
    "afmoe": NATIVE, "arctic": NATIVE, "bailingmoe": NATIVE, "bailingmoe2": NATIVE, "bailingmoe3": NATIVE,
    "cohere2moe": NATIVE, "dbrx": NATIVE, "deepseek": NATIVE, "deepseek2": NATIVE, "deepseek32": NATIVE, "deepseek4": NATIVE,
    "dots1": NATIVE, "dots3note": NATIVE, "ernie4_5-moe": NATIVE, "exaone-moe": NATIVE,
    "glm-dsa": NATIVE, "glm4moe": NATIVE, "glm5-next": NATIVE, "gemma4": NATIVE, "gpt-oss": NATIVE, "granite": NATIVE, "granitehybrid": NATIVE, "granitemoe": NATIVE,
    "grok": NATIVE, "grovemoe": NATIVE, "hunyuan-moe": NATIVE, "hy_v3": NATIVE, "hy_v4": NATIVE, "jamba": NATIVE, "kimi-k3": NATIVE,
    "kimi-linear": NATIVE, "laguna": NATIVE, "lfm2moe": NATIVE, "llama": NATIVE, "llama4": NATIVE, "maple": NATIVE,
    "mellum": NATIVE, "mimo2": NATIVE, "minicpm": NATIVE, "minimax-01": NATIVE, "minimax-m2": NATIVE, "minimax-m3": NATIVE,
    "mistral3": NATIVE, "mistral4": NATIVE, "nemotron_h_moe": NATIVE, "olmoe": NATIVE, "phimoe": NATIVE, "qwen2moe": NATIVE,
    "qwen35moe": NATIVE, "qwen3moe": NATIVE, "qwen3next": NATIVE, "qwen3vlmoe": NATIVE, "qwen4exp": NATIVE,
    "smallthinker": NATIVE, "step35": NATIVE,
    "llada-moe": DIFFUSION, "rnd1": DIFFUSION,
    # the generator's "MoE" variant of these has no routed experts in llama.cpp's graph
    "ernie4_5": DENSE, "paddleocr": DENSE, "refact": DENSE,
}


@pytest.fixture(scope="session")
def arch_models() -> Path:
    r = subprocess.run(["bash", str(ROOT / "tests" / "build-arch-models.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building llama.cpp's model generator failed:\n{r.stderr[-3000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def model_path(arch_models: Path, arch: str) -> Path:
    return arch_models / f"{arch}-moe.gguf"


def test_every_generated_moe_architecture_is_listed(arch_models):
    """A llama.cpp update that adds an MoE architecture fails here until it is listed."""
    generated = {p.name[:-len("-moe.gguf")] for p in arch_models.glob("*-moe.gguf")}
    assert generated - set(ARCHS) == set(), "generated MoE models not in ARCHS"
    assert set(ARCHS) - generated == set(), "ARCHS names models the generator no longer writes"


def exact_engine(path: Path, capture: str):
    from moeviz.engine import Engine

    # f32 KV cache, no flash attention: the two backends then do identical arithmetic;
    # n_ubatch 16 < n_batch so a prompt spans several ubatches of one decode.
    return Engine(path, n_ctx=256, n_batch=64, n_ubatch=16, capture=capture, kv_type="f32", flash_attn="off")


def expected_weights(info, ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Gate weights as `moeviz info` says the graph computes them from the probabilities."""
    sel = np.take_along_axis(probs, ids, axis=-1).astype(np.float64)
    if info.gating == "softmax_weight" or info.weights_normalized:
        # softmax over the selected logits == softmax over all, renormalized on the selection
        sel = sel / sel.sum(axis=-1, keepdims=True)
    return sel * info.weights_scale


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architecture(arch_models, arch):
    from moeviz.engine import Engine
    from moeviz.gguf_info import read_model_info

    path = model_path(arch_models, arch)
    info = read_model_info(path)
    assert info.architecture == arch
    assert info.is_moe == (ARCHS[arch] != DENSE)
    if ARCHS[arch] != NATIVE:
        with pytest.raises(Exception) as e:
            Engine(path, n_ctx=256, capture="auto")
        msg = str(e.value)
        assert ARCHS[arch] in msg and "\n" not in msg and "Traceback" not in msg
        return
    rng = np.random.default_rng(7)
    native, callback = exact_engine(path, "native"), exact_engine(path, "callback")
    try:
        eog = {t for t in range(native.lm.n_vocab) if native.lm.is_eog(t)}
        tokens = [int(t) for t in rng.integers(0, native.lm.n_vocab, 48) if int(t) not in eog][:44]
        a = callback.replay(tokens, 40, probs=True)
        b = native.replay(tokens, 40, probs=True)
    finally:
        native.close()
        callback.close()
    assert a.expert_ids.shape == (44, len(info.moe_layers), info.n_expert_used)
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.probs, b.probs)
    # every token's experts are distinct and in range
    assert (np.sort(b.expert_ids, axis=-1)[..., 1:] != np.sort(b.expert_ids, axis=-1)[..., :-1]).all()
    assert b.expert_ids.min() >= 0 and b.expert_ids.max() < info.n_expert
    np.testing.assert_allclose(b.weights, expected_weights(info, b.expert_ids, b.probs), rtol=2e-5, atol=1e-6,
                               err_msg=f"{arch}: gating {info.gating}, normalized {info.weights_normalized}, "
                                       f"scale {info.weights_scale} do not give the captured weights")


@pytest.mark.parametrize("arch", sorted(a for a, how in ARCHS.items() if how == NATIVE))
def test_native_head_runs_on_the_requested_rows_only(arch_models, arch):
    """With capture on, the last layer routes every row but the output head must still
    run only on the rows whose logits were asked for: the patch finds the head by the
    graph's structure. Seen through the eval callback on a 40-token batch that asks for
    the last row only: the last MoE layer's top-k has 40 rows, `result_output` (the
    logits) one."""
    import ctypes

    from moeviz.capture.native import _api
    from moeviz.llama.lib import GgmlTensor, llama_cpp
    from moeviz.llama.model import LoadedModel

    lc = llama_cpp()
    seen: dict[bytes, int] = {}

    def on_node(t, ask, _user):
        if ask:
            s = GgmlTensor.from_address(t)
            seen[s.name] = int(s.ne[1])
        return False if ask else True

    cb = lc.ggml_backend_sched_eval_callback(on_node)

    def configure(cp):
        cp.cb_eval = cb
        cp.cb_eval_user_data = None

    lm = LoadedModel(model_path(arch_models, arch), n_ctx=256, n_batch=64, n_threads=None, n_gpu_layers=0,
                     configure_context=configure)
    try:
        _api()[0](lm.ctx, True, False)
        batch = lc.llama_batch_init(64, 0, 1)
        try:
            for i in range(40):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = 1 + i % 60, i, 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == 39
            batch.n_tokens = 40
            assert lc.llama_decode(lm.ctx, batch) == 0
        finally:
            lc.llama_batch_free(batch)
    finally:
        lm.close()
    from moeviz.gguf_info import read_model_info

    last = read_model_info(model_path(arch_models, arch)).moe_layers[-1]
    assert seen.get(f"ffn_moe_topk-{last}".encode()) == 40, "the last MoE layer did not route every row"
    assert seen.get(b"result_output") == 1, f"the head ran on {seen.get(b'result_output')} rows"


@pytest.mark.parametrize("arch", sorted(a for a, how in ARCHS.items() if how == NATIVE))
def test_interventions_on_every_architecture(arch_models, arch):
    """One more expert per token and expert 0 masked in every MoE layer: no abort, the
    two backends agree exactly, the mask holds, every token has k + 1 distinct experts."""
    path = model_path(arch_models, arch)
    engines = [exact_engine(path, "native"), exact_engine(path, "callback")]
    try:
        info = engines[0].info
        k = min(info.n_expert - 1, info.n_expert_used + 1)
        tokens = [int(t) % engines[0].lm.n_vocab for t in range(5, 5 + 3 * 20, 3)]
        got = []
        for e in engines:
            e.set_interventions(experts_per_token=k, mask=[(layer, 0) for layer in info.moe_layers])
            got.append(e.replay(tokens, 16, probs=True))
    finally:
        for e in engines:
            e.close()
    a, b = got
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert b.expert_ids.shape[-1] == k and not (b.expert_ids == 0).any()
    srt = np.sort(b.expert_ids, axis=-1)
    assert (srt[..., 1:] != srt[..., :-1]).all()


def copy_without(src: Path, dst: Path, drop_key: str) -> Path:
    """A copy of a GGUF with one metadata key removed (everything else byte-identical data)."""
    return rewrite_gguf(src, dst, drop_keys={drop_key})


def rewrite_gguf(src: Path, dst: Path, *, drop_keys=frozenset(), set_u32: dict | None = None,
                 drop_tensors: str | None = None, extra_tensors=()) -> Path:
    """A copy of a GGUF with metadata keys dropped or set (uint32), tensors whose name
    matches `drop_tensors` left out, and (name, numpy array) tensors added."""
    import gguf

    r = gguf.GGUFReader(src)
    arch = str(r.fields["general.architecture"].contents())
    w = gguf.GGUFWriter(str(dst), arch)
    set_u32 = dict(set_u32 or {})
    for name, f in r.fields.items():
        if name in drop_keys or name in set_u32 or name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY and not f.data:
            continue   # gguf-py writes no empty arrays; the loaders read them as absent
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), vtype)
    for name, value in set_u32.items():
        w.add_uint32(name, value)
    for t in r.tensors:
        if drop_tensors and re.search(drop_tensors, t.name):
            continue
        w.add_tensor(t.name, t.data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
    for name, arr in extra_tensors:
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def native_equals_callback(path: Path, n_prompt: int = 40, n: int = 44):
    native, callback = exact_engine(path, "native"), exact_engine(path, "callback")
    try:
        tokens = [int(t) % native.lm.n_vocab for t in range(3, 3 + 2 * n, 2)]
        a, b = callback.replay(tokens, n_prompt, probs=True), native.replay(tokens, n_prompt, probs=True)
        info = native.info
    finally:
        native.close()
        callback.close()
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.probs, b.probs)
    return info, b


def test_next_token_prediction_layer_is_not_routed(arch_models, tmp_path):
    """GLM-4.5 ships its multi-token-prediction block as the last layer (router and
    experts included); llama.cpp's main graph never runs it. A GLM-4-MoE model with such
    a block: moeviz expects routing from the trunk's MoE layers only, and gets it."""
    import gguf

    src = model_path(arch_models, "glm4moe")
    r = gguf.GGUFReader(src)
    n_layer = int(r.fields["glm4moe.block_count"].contents())
    mtp = n_layer
    extra = []
    for t in r.tensors:   # the last trunk layer's tensors again, as the MTP block's
        # (not the generator's optional per-tensor .scale / .input_scale: real files have none)
        if t.name.startswith(f"blk.{n_layer - 1}.") and not t.name.endswith("scale"):
            extra.append((t.name.replace(f"blk.{n_layer - 1}.", f"blk.{mtp}.", 1),
                          np.array(t.data).reshape([int(x) for x in reversed(t.shape)]).astype(np.float32)))
    n_embd = int(r.fields["glm4moe.embedding_length"].contents())
    rng = np.random.default_rng(0)
    extra += [(f"blk.{mtp}.nextn.eh_proj.weight", rng.standard_normal((n_embd, 2 * n_embd)).astype(np.float32)),
              (f"blk.{mtp}.nextn.enorm.weight", np.ones(n_embd, np.float32)),
              (f"blk.{mtp}.nextn.hnorm.weight", np.ones(n_embd, np.float32))]
    path = rewrite_gguf(src, tmp_path / "glm4moe-mtp.gguf", extra_tensors=extra,
                        set_u32={"glm4moe.block_count": n_layer + 1, "glm4moe.nextn_predict_layers": 1})
    info, routing = native_equals_callback(path)
    assert info.nextn_layers == [mtp] and mtp not in info.moe_layers and info.moe_layers
    assert routing.expert_ids.shape[1] == len(info.moe_layers)


def test_granitemoe_without_shared_experts(arch_models, tmp_path):
    """The generator's GraniteMoE has a shared expert; Granite 3.x MoE models have none."""
    src = model_path(arch_models, "granitemoe")
    path = rewrite_gguf(src, tmp_path / "granitemoe-noshexp.gguf", drop_tensors=r"_shexp\.",
                        drop_keys={"granitemoe.expert_shared_feed_forward_length"})
    info, _ = native_equals_callback(path)
    assert info.n_shared_experts == 0 and info.is_moe
    shared, _ = native_equals_callback(src)
    assert shared.n_shared_experts >= 1


@pytest.mark.parametrize("arch", ["dots1", "hy_v4", "minimax-m2", "smallthinker"])
def test_metadata_llama_cpp_would_abort_on_is_refused_first(arch_models, tmp_path, arch):
    """Without its gating key, build_moe_ffn aborts the process on these (no default in
    their loaders); moeviz refuses the file with one line before llama.cpp sees it."""
    from moeviz.engine import Engine
    from moeviz.gguf_info import ModelFileError

    control = copy_without(model_path(arch_models, arch), tmp_path / f"{arch}-copy.gguf", "")
    Engine(control, n_ctx=256).close()   # the copy itself loads
    path = copy_without(model_path(arch_models, arch), tmp_path / f"{arch}.gguf", f"{arch}.expert_gating_func")
    with pytest.raises(ModelFileError) as e:
        Engine(path, n_ctx=256)
    assert "expert_gating_func" in str(e.value) and "\n" not in str(e.value)


# The README table --------------------------------------------------------------------
README_BEGIN = "<!-- architectures: generated by `python tests/test_archs.py --readme` -->"
README_END = "<!-- /architectures -->"


def readme_table() -> str:
    rows = ["| architecture | routing capture |", "| --- | --- |"]
    for arch in sorted(ARCHS):
        how = ARCHS[arch]
        rows.append(f"| `{arch}` | " + {NATIVE: "native (checked equal to the eval callback)",
                                         DIFFUSION: "refused: a diffusion model, not decoded left to right",
                                         DENSE: "refused: no routed experts in llama.cpp's graph"}[how] + " |")
    return "\n".join([README_BEGIN, *rows, README_END])


def _readme_section(text: str) -> str | None:
    m = re.search(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), text, re.S)
    return m.group(0) if m else None


def test_readme_table_is_current():
    text = (ROOT / "README.md").read_text()
    assert _readme_section(text) == readme_table(), "README's architecture table is stale: python tests/test_archs.py --readme"


if __name__ == "__main__" and sys.argv[1:] == ["--readme"]:
    p = ROOT / "README.md"
    text = p.read_text()
    old = _readme_section(text)
    if old is None:
        raise SystemExit(f"README.md has no {README_BEGIN} ... {README_END} section")
    p.write_text(text.replace(old, readme_table()))
    print("README.md: architecture table rewritten")
elif __name__ == "__main__":
    raise SystemExit(f"usage: {os.path.basename(sys.argv[0])} --readme")
