"""Top-k overrides and expert masks (patched libllama), checked against a numpy
forward pass and against the captured router probabilities."""
from __future__ import annotations

import numpy as np
import pytest
from reference_llama import forward

from moeviz.engine import Engine, SettingsError

EXACT = dict(n_ctx=512, kv_type="f32", flash_attn="off")
PROMPT = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"


@pytest.fixture(scope="module", params=["native", "callback"])
def engine(request, fixture_models):
    e = Engine(fixture_models["llama"], capture=request.param, **EXACT)
    yield e
    e.close()


def route(e, tokens, n_prompt):
    return e.replay(tokens, n_prompt, probs=True)


def tokens_of(e):
    return e.prompt_tokens(PROMPT)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k_override_matches_the_reference(engine, fixture_models, k):
    toks = tokens_of(engine)
    engine.set_interventions(experts_per_token=k)
    try:
        r = route(engine, toks, len(toks))
    finally:
        engine.set_interventions()
    probs, ids, w, _ = forward(fixture_models["llama"], toks, k=k)
    assert r.expert_ids.shape == (len(toks), ids.shape[1], k)
    # sets, not order: the reference's stable argsort and ggml's order ties differently
    np.testing.assert_array_equal(np.sort(r.expert_ids, -1), np.sort(ids, -1))
    np.testing.assert_allclose(np.sort(r.weights, -1), np.sort(w, -1), atol=1e-4)
    np.testing.assert_allclose(r.probs, probs, atol=1e-4)


def test_masked_experts_are_never_selected_and_the_best_unmasked_are(engine, fixture_models):
    toks = tokens_of(engine)
    base = route(engine, toks, len(toks))
    # mask each layer's most used expert, and every layer's expert 0 (the `*:E` form)
    L = base.expert_ids.shape[1]
    layers = engine.info.moe_layers
    mask = {(layers[li], int(np.bincount(base.expert_ids[:, li].ravel()).argmax())) for li in range(L)}
    mask |= {(layer, 0) for layer in layers}
    engine.set_interventions(mask=sorted(mask))
    try:
        r = route(engine, toks, len(toks))
    finally:
        engine.set_interventions()
    for li, layer in enumerate(layers):
        banned = [e for (la, e) in mask if la == layer]
        assert not np.isin(r.expert_ids[:, li], banned).any()
        scores = r.probs[:, li].copy()            # the router's own (unmasked) probabilities
        scores[:, banned] = -np.inf
        best = np.sort(np.argsort(-scores, -1, kind="stable")[:, :engine.info.n_expert_used], -1)
        np.testing.assert_array_equal(np.sort(r.expert_ids[:, li], -1), best)
        sel = np.take_along_axis(r.probs[:, li], r.expert_ids[:, li], -1)
        np.testing.assert_allclose(r.weights[:, li], sel / sel.sum(-1, keepdims=True), rtol=1e-5)
    _, ref_ids, _, ref_logits = forward(fixture_models["llama"], toks, mask=sorted(mask))
    np.testing.assert_array_equal(np.sort(r.expert_ids, -1), np.sort(ref_ids, -1))


def test_masked_logits_match_the_reference(fixture_models):
    e = Engine(fixture_models["llama"], capture="native", **EXACT)
    try:
        toks = tokens_of(e)
        mask = [(layer, 1) for layer in e.info.moe_layers]
        e.set_interventions(mask=mask)
        e.replay(toks, len(toks))
        import llama_cpp.llama_cpp as lc
        n_vocab = e.lm.n_vocab
        got = np.ctypeslib.as_array(lc.llama_get_logits_ith(e.lm.ctx, -1), shape=(n_vocab,)).astype(np.float64)
    finally:
        e.close()
    ref = forward(fixture_models["llama"], toks, mask=mask)[3][-1]
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_clearing_restores_the_original_routing_bit_for_bit(engine):
    toks = tokens_of(engine)
    a = route(engine, toks, len(toks) - 3)
    engine.set_interventions(experts_per_token=1, mask=[(engine.info.moe_layers[0], 2)])
    route(engine, toks, len(toks) - 3)
    engine.set_interventions()
    b = route(engine, toks, len(toks) - 3)
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)


@pytest.mark.parametrize("kw, words", [
    ({"experts_per_token": 0}, "from 1 to"), ({"experts_per_token": 99}, "from 1 to"),
    ({"experts_per_token": True}, "from 1 to"),
    ({"mask": [(99, 0)]}, "not one of this model's MoE layers"), ({"mask": [(0, 99)]}, "out of range"),
    ({"mask": [(0, e) for e in range(7)]}, "keeps 1 experts, fewer than the 2"),
])
def test_bad_interventions_are_refused_before_llama_cpp(engine, kw, words):
    with pytest.raises(SettingsError) as e:
        engine.set_interventions(**kw)
    assert words in str(e.value)
    assert engine.experts_per_token == engine.info.n_expert_used and engine.mask == []


def test_groups_and_selection_bias_respect_the_mask(fixture_models):
    """deepseek2: sigmoid scores + selection bias + group-limited routing."""
    e = Engine(fixture_models["deepseek2"], capture="native", **EXACT)
    try:
        toks = tokens_of(e)
        mask = [(layer, x) for layer in e.info.moe_layers for x in (0, 5, 9)]
        e.set_interventions(mask=mask)
        r = e.replay(toks, len(toks))
    finally:
        e.close()
    assert not np.isin(r.expert_ids, [0, 5, 9]).any()


def test_token_routed_layers_refuse_interventions(fixture_models):
    """DeepSeek-V4's hash layers take experts from the token id: llama.cpp would build a
    graph whose aggregation no longer matches them, so moeviz refuses first."""
    e = Engine(fixture_models["llama"], capture="native", **EXACT)
    try:
        e.info.token_routed_layers = [e.info.moe_layers[0]]
        with pytest.raises(SettingsError, match="by token id"):
            e.set_interventions(experts_per_token=1)
        with pytest.raises(SettingsError, match="by token id"):
            e.set_interventions(mask=[(e.info.moe_layers[0], 1)])
        e.set_interventions(mask=[(e.info.moe_layers[1], 1)])   # other layers still can
    finally:
        e.close()
