"""The patched library's native capture agrees with the eval callback on every fixture."""
import os

import numpy as np
import pytest
from test_capture import ARCHS, record

from moeviz.engine import Engine
from moeviz.capture.factory import native_available

pytestmark = pytest.mark.skipif(
    not native_available() and os.environ.get("MOEVIZ_ALLOW_UNPATCHED") == "1",
    reason="unpatched llama-cpp-python explicitly allowed")


def test_patched_library_is_installed():
    assert native_available(), "make setup installs the patched llama-cpp-python; native capture is missing"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("probs", [False, True])
def test_native_equals_callback(engines, arch, probs):
    prompt = "The quick brown fox, in Python: [x * x for x in range(10)] # squares" * 3
    a = record(engines(arch, "callback"), prompt, probs=probs, max_tokens=8)
    b = record(engines(arch, "native"), prompt, probs=probs, max_tokens=8)
    assert [t["id"] for t in a.tokens] == [t["id"] for t in b.tokens]
    assert b.n_tokens == b.n_prompt + 8
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)
    if probs:
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    else:
        assert a.probs is None and b.probs is None


def test_native_across_ubatches_and_probability_toggles(fixture_models):
    """Several ubatches per prompt, and switching probabilities on and off between runs."""
    exact = dict(n_ctx=1024, kv_type="f32", flash_attn="off")   # ubatch size must not move the numbers
    e = Engine(fixture_models["llama"], n_batch=32, capture="native", **exact)
    ref = Engine(fixture_models["llama"], capture="callback", **exact)
    try:
        prompt = "Once upon a time, in a small village by the sea, there lived an old fisherman. " * 3
        for probs in (True, False, True):
            a, b = record(ref, prompt, probs=probs, max_tokens=4), record(e, prompt, probs=probs, max_tokens=4)
            assert a.n_prompt > 64
            np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
            np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)
            assert (b.probs is not None) == probs
    finally:
        e.close()
        ref.close()


@pytest.mark.parametrize("arch", ARCHS)   # deepseek2's head is a plain ggml_mul_mat: the output-norm hook
def test_native_logits_unchanged_by_capture(fixture_models, arch):
    """The deferred row selection before the head must give llama.cpp's normal logits."""
    import llama_cpp.llama_cpp as lc

    from moeviz.capture.native import _api

    e = Engine(fixture_models[arch], n_ctx=512, capture="native")
    try:
        toks = e.prompt_tokens("Hello there, general logits check")
        out = []
        for on in (True, False):
            _api()[0](e.lm.ctx, on, False)
            e.lm.clear_memory()
            e.capture.begin(False)
            arr = (lc.llama_token * len(toks))(*toks)
            assert lc.llama_decode(e.lm.ctx, lc.llama_batch_get_one(arr, len(toks))) == 0
            out.append(np.ctypeslib.as_array(lc.llama_get_logits_ith(e.lm.ctx, -1), shape=(e.lm.n_vocab,)).copy())
        np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    finally:
        e.close()


def test_copy_refuses_buffers_sized_for_another_batch(engines):
    """The C copy is told the caller's row count: a mismatch is an error, not a heap overflow."""
    from moeviz.capture import MissingRouting

    e = engines("llama", "native")
    toks = e.prompt_tokens("several tokens of prompt here")
    e.lm.clear_memory()
    e._decode(toks, 0, False, False)
    with pytest.raises(MissingRouting, match="does not match the decoded batch"):
        e.capture.finish(1)
