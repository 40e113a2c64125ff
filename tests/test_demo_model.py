"""The shipped demo model (moeviz/data/demo-moe.gguf): faithful through llama.cpp, and trained.

Held-out text is read from this interpreter's standard library (the corpus the model
was trained on; the four documents used are in its held-out split). An independent float64
numpy forward pass of the GGUF (tests/reference_llama.py) is the ground truth: llama.cpp's
logits and captured routing must match it, and its perplexity and routing must show a
trained model, which a random-weight model of the same shape is not.
No PyTorch here (it is only needed to train).
"""
import ctypes
import json
import os
from pathlib import Path

import numpy as np
import pytest
from reference_llama import forward

from moeviz.demo_model import stats
from moeviz.demo_model.corpus import is_held_out, load_document
from moeviz.demo_model.export import ModelConfig, read_tokenizer, write_gguf
from moeviz.engine import SamplingSettings
from moeviz.trace.builder import TraceBuilder

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path(os.environ.get("MOEVIZ_DEMO_MODEL", ROOT / "moeviz" / "data" / "demo-moe.gguf"))
FACTS = MODEL.with_suffix(".json")

# Held-out documents (and where in them to start): two of code with few docstrings,
# two of the reference manual's prose.
SAMPLES = {"code": [("code:tomllib/_parser.py", "\nclass Flags:"), ("code:gzip.py", "\nclass _GzipReader")],
           "prose": [("prose:topics/exceptions", ""), ("prose:topics/types", "")]}
N_TOKENS = 384          # per sample (the model was trained on 512-token windows)

# float32 llama.cpp (f32 weights and KV cache, no flash attention) against float64 numpy.
LOGIT_ATOL = 1e-3       # logits are O(10); observed differences are <= 9e-5
ROUTING_AGREEMENT = 0.99
# Code-vs-prose routing (stats.kind_separation): in its most specialized layer, how much
# further apart (total variation distance of expert distributions) a code and a prose
# sample are than two samples of the same kind. Measured: trained 0.38 (last layer);
# random weights of the same shape, seeds 0-5: 0.08-0.25 (64 experts: noisier than 16).
SEPARATION_MIN = 0.32
# Model perplexity at most this share of the best possible unigram's on the same text
# (measured: 0.20-0.33 on the four samples).
PERPLEXITY_RATIO_MAX = 0.5


def held_out_text(name: str, start: str) -> str:
    assert is_held_out(name), f"{name} is in the training split"
    text = load_document(name)
    return text[text.index(start) + 1 if start else 0:][:6 * N_TOKENS]


@pytest.fixture(scope="module")
def engine():
    from moeviz.engine import Engine

    assert MODEL.exists(), f"{MODEL} is missing: run `make demo-model`"
    e = Engine(MODEL, n_ctx=1024, capture="native", kv_type="f32", flash_attn="off")
    yield e
    e.close()


@pytest.fixture(scope="module")
def samples(engine):
    """[(kind, tokens, llama.cpp logits [T, V], trace)] for the held-out samples."""
    from moeviz.llama.lib import llama_cpp

    lc = llama_cpp()
    out = []
    for kind, name, start in [(k, n, s) for k, docs in SAMPLES.items() for n, s in docs]:
        tokens = engine.prompt_tokens(held_out_text(name, start))[:N_TOKENS]
        assert len(tokens) == N_TOKENS
        # Routing through the public path: prefill plus a few greedy steps.
        b = TraceBuilder(engine.info, tokens, {})
        for ev in engine.generate(tokens, SamplingSettings(max_tokens=4, temperature=0.0), probs=True):
            b.add(ev)
        trace = b.trace()
        # Logits of every prompt position: one more decode with all outputs on.
        engine.lm.clear_memory()
        engine._decode(tokens, 0, True, False)
        ptr = lc.llama_get_logits(engine.lm.ctx)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(N_TOKENS, engine.lm.n_vocab)).copy()
        out.append((kind, tokens, logits, trace))
    return out


@pytest.fixture(scope="module")
def reference(samples):
    """Numpy forward of the trained GGUF over each sample's traced tokens (prompt + generated)."""
    return [forward(MODEL, [t["id"] for t in trace.tokens]) for _, _, _, trace in samples]


def config() -> ModelConfig:
    return ModelConfig(**json.loads(FACTS.read_text())["config"])


def test_facts_describe_the_shipped_file():
    facts = json.loads(FACTS.read_text())
    assert facts["file_bytes"] == MODEL.stat().st_size < 25_000_000
    assert (facts["params"]["total"], facts["params"]["active"]) == config().n_params()
    ppl = facts["perplexity"]["all"]
    assert ppl["model"] < ppl["unigram"] / 10   # held-out split vs the training split's unigram


@pytest.mark.slow
def test_llama_cpp_logits_match_numpy_forward(samples, reference):
    for (kind, tokens, logits, _), ref in zip(samples, reference):
        ref_logits = ref[3][:N_TOKENS]
        err = np.abs(logits - ref_logits).max()
        assert err < LOGIT_ATOL, f"{kind}: llama.cpp logits differ from the float64 forward by {err:.2e}"
        # ... so the greedy choices agree wherever the top two are not a near-tie
        top2 = np.sort(ref_logits, -1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 10 * LOGIT_ATOL
        assert (logits.argmax(-1) == ref_logits.argmax(-1))[clear].all()


@pytest.mark.slow
def test_captured_routing_matches_numpy_router(samples, reference):
    agree = total = 0
    for (kind, _, _, trace), (ref_probs, ref_ids, ref_w, _) in zip(samples, reference):
        assert trace.n_tokens == N_TOKENS + 4 and trace.expert_ids.shape == ref_ids.shape
        decisions = (np.sort(trace.expert_ids, -1) == np.sort(ref_ids, -1)).all(-1)   # [T, L]: same expert set
        agree += int(decisions.sum())
        total += decisions.size
        # where the sets agree, the applied gate weights do too; router probabilities everywhere
        got_w = np.take_along_axis(trace.weights, np.argsort(trace.expert_ids, -1), -1)
        want_w = np.take_along_axis(ref_w, np.argsort(ref_ids, -1), -1)
        assert np.abs(got_w - want_w)[decisions].max() < 1e-3, kind
        np.testing.assert_allclose(trace.probs, ref_probs, atol=1e-3)
    assert agree / total >= ROUTING_AGREEMENT, f"expert sets agree on {agree}/{total} (token, layer) decisions"


@pytest.mark.slow
def test_held_out_perplexity_far_below_unigram(samples, reference):
    for (kind, tokens, _, _), ref in zip(samples, reference):
        ppl = stats.perplexity(ref[3][:N_TOKENS], tokens)
        # the unigram fitted on this very text: no unigram model does better on it
        uni = stats.oracle_unigram_perplexity(tokens[1:])
        assert ppl < PERPLEXITY_RATIO_MAX * uni, f"{kind}: perplexity {ppl:.1f} vs best unigram {uni:.1f}"


def random_model(path: Path, seed: int) -> Path:
    """The demo model's shape and tokenizer with random weights, scaled like moeviz's fixtures."""
    cfg = config()
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in cfg.shapes().items():
        if name.endswith("norm.weight"):
            tensors[name] = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "token_embd.weight":
            tensors[name] = rng.standard_normal(shape)
        elif name.endswith("ffn_gate_inp.weight"):
            tensors[name] = rng.standard_normal(shape) * 2.0 / np.sqrt(shape[-1])
        else:
            tensors[name] = rng.standard_normal(shape) / np.sqrt(shape[-1])
    tokens, merges = read_tokenizer(MODEL)
    return write_gguf(path, cfg, tokens, merges, tensors, name="random")


def separation(ids: list[np.ndarray], samples) -> float:
    """Separation of code from prose in the most specialized layer."""
    sep = stats.kind_separation([i[:N_TOKENS] for i in ids], [s[0] for s in samples], config().n_expert)
    return float(sep["separation"].max())


@pytest.mark.slow
def test_routing_separates_code_from_prose_unlike_random_weights(samples, reference, tmp_path):
    trained = separation([r[1] for r in reference], samples)
    randoms = []
    for seed in range(3):
        path = random_model(tmp_path / f"random{seed}.gguf", seed)
        randoms.append(separation([forward(path, tokens)[1] for _, tokens, _, _ in samples], samples))
    assert trained > SEPARATION_MIN, f"trained model: code/prose separation {trained:.3f}"
    assert max(randoms) < SEPARATION_MIN, f"random weights separate code from prose: {randoms}"


# Fine-grained experts (64, top-4): a short prompt's run leaves experts unused, and which
# ones depends on the prompt. Real greedy recordings of two bundled demo prompts, one of
# code and one of reference-manual prose (moeviz.demo_model.dormant_report counts the same
# way for docs/demo-model.md).
DORMANT_PROMPTS = ("code-fibonacci", "docs-with-statement")


@pytest.mark.slow
def test_short_prompts_leave_different_experts_dormant(engine):
    from moeviz.demo_model.dormant_report import dormant_sets, uniform_dormant_share
    from moeviz.prompts import load_prompts
    from moeviz.record import record

    library = load_prompts()
    E, k = engine.info.n_expert, engine.info.n_expert_used
    assert (E, k) == (config().n_expert, config().n_expert_used) and E >= 64
    sets = {}
    for name in DORMANT_PROMPTS:
        p = library[name]
        assert "demo" in p.models
        trace = record(engine, p.prompt, SamplingSettings(max_tokens=64, temperature=0.0, seed=0))
        ids = np.asarray(trace.expert_ids)
        assert ids.shape[1:] == (config().n_layer, k) and trace.n_tokens <= 64 + 64
        sets[name] = dormant_sets(ids, E)
        share = sum(map(len, sets[name])) / (len(sets[name]) * E)
        # some layer has experts no token used, far more than uniform routing would leave
        assert max(map(len, sets[name])) > 0, f"{name}: every expert of every layer fired"
        assert share > 5 * uniform_dormant_share(trace.n_tokens, k, E), f"{name}: dormant share {share:.3f}"
    a, b = (sets[n] for n in DORMANT_PROMPTS)
    assert a != b
    # ... and not one fixed set of unused experts: each prompt leaves dormant experts the other used
    assert sum(len(x - y) for x, y in zip(a, b)) > 0 and sum(len(y - x) for x, y in zip(a, b)) > 0
