"""Real shapes and weights: fixtures quantized by llama.cpp's own quantizer (the way
downloadable GGUFs are made), and one shaped like Qwen3-30B-A3B (48 MoE layers x 128
experts, top-8, a 151,936-token vocabulary, tiny hidden size), written at test time.

Native and callback capture agree exactly (ids, weights, probabilities) on all of them,
including prompts longer than a ubatch where the callback has to prefill in chunks
(docs/capture.md, "Exactness between the backends"); the Qwen3-30B-shaped model also runs through `moeviz record`,
`moeviz serve` and the page.
"""
import json
import os

import numpy as np
import pytest
from conftest import run_cli
from serverproc import ServerProcess
from test_capture import record

from moeviz.engine import Engine
from moeviz.capture.factory import native_available
from moeviz.fixtures import FixtureSpec, write_fixture
from moeviz.fixtures.models import QWEN3_30B_SHAPE
from moeviz.fixtures.quantize import FTYPES, quantize_gguf
from moeviz.gguf_info import read_model_info
from moeviz.trace import load

pytestmark = pytest.mark.slow    # quantizing fixtures and a 152k-vocabulary model: minutes (make test, not test-fast)
needs_native = pytest.mark.skipif(not native_available() and os.environ.get("MOEVIZ_ALLOW_UNPATCHED") == "1",
                                  reason="unpatched llama-cpp-python explicitly allowed")

# Rows of 256 everywhere (n_embd, n_ff, 4 heads of 64), so K-quants apply to every matrix
# and llama.cpp's quantizer never falls back to another type for lack of row size.
QUANT_SPEC = FixtureSpec(arch="qwen3moe", n_layer=4, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_ff=256,
                         n_expert=8, n_expert_used=2, seed=5)
# The type each file's experts must be stored in (the recipe mixes others in elsewhere:
# Q4_K_M keeps some ffn_down in Q6_K, Q3_K_M some in Q4_K, ...).
EXPERT_TYPE = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q2_K": "Q2_K",
               "Q3_K_M": "Q3_K", "Q4_K_M": "Q4_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K", "IQ4_NL": "IQ4_NL",
               "IQ4_XS": "IQ4_XS", "TQ2_0": "TQ2_0", "F16": "F16", "BF16": "BF16"}
# Types whose ggml-cpu matmul gives each row the same result whatever else is in the batch.
# K- and IQ-quants are not among them: ggml's tiled matmul is chosen per expert per ubatch
# (from 8 rows routed to it), so only whole ubatches reproduce native's numbers exactly.
ROW_LOCAL = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "TQ2_0"]
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x * 2 "


def test_ftypes_cover_the_expert_types():
    assert set(EXPERT_TYPE) == set(FTYPES) and set(ROW_LOCAL) <= set(FTYPES)


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    base = write_fixture(folder / "base-f32.gguf", QUANT_SPEC)
    cache = {}

    def get(ftype):
        if ftype not in cache:
            cache[ftype] = quantize_gguf(base, folder / f"qwen3moe-{ftype}.gguf", ftype)
        return cache[ftype]
    return get


def assert_same_routing(a, b):
    assert [t["id"] for t in a.tokens] == [t["id"] for t in b.tokens]
    np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.probs is None) == (b.probs is None)
    if a.probs is not None:
        np.testing.assert_array_equal(a.probs, b.probs)


@needs_native
@pytest.mark.parametrize("ftype", FTYPES)
def test_quantized_fixture_types_and_native_equals_callback(quantized, ftype):
    path = quantized(ftype)
    info = read_model_info(path)
    types = info.tensor_types
    import gguf

    by_name = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert by_name["blk.0.ffn_gate_exps.weight"] == EXPERT_TYPE[ftype], by_name
    assert by_name["blk.0.ffn_gate_inp.weight"] == "F32" and by_name["blk.0.attn_q_norm.weight"] == "F32"
    assert EXPERT_TYPE[ftype] in types and info.moe_layers == [0, 1, 2, 3] and info.n_expert_used == 2
    # n_batch 64: the 150-token prompt spans three ubatches, the callback decodes the same ones
    engines = [Engine(path, n_ctx=512, n_batch=64, capture=c) for c in ("native", "callback")]
    try:
        prompt = TEXT * 4
        a, b = (record(e, prompt, probs=True, max_tokens=6) for e in engines)
    finally:
        for e in engines:
            e.close()
    assert a.n_prompt > 128
    assert_same_routing(a, b)


@needs_native
@pytest.mark.parametrize("ftype", ROW_LOCAL)
def test_chunked_callback_prefill_equals_native(quantized, ftype):
    """A budget of zero forces the callback's smallest chunks (128 rows at most): split
    evenly inside native's ubatches they still give every row native's numbers."""
    path = quantized(ftype)
    native = Engine(path, n_ctx=1024, capture="native")
    chunked = Engine(path, n_ctx=1024, capture="callback", output_budget=0)
    try:
        base = native.prompt_tokens(TEXT * 25)
        for n in (309, 514):   # 3 chunks of 103 in one ubatch; a 512-row ubatch and a 2-row one
            a, b = (e.replay(base[:n] + [5, 77], n, probs=True) for e in (native, chunked))
            np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
            np.testing.assert_array_equal(a.weights, b.weights)
            np.testing.assert_array_equal(a.probs, b.probs)
    finally:
        native.close()
        chunked.close()


@needs_native
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_0", "Q4_K_M"])
def test_info_and_record_quantized(quantized, tmp_path, ftype):
    path = quantized(ftype)
    info = json.loads(run_cli("info", path, "--json", check=True).stdout)
    assert EXPERT_TYPE[ftype] in info["tensor_types"] and info["architecture"] == "qwen3moe"
    if ftype == "Q4_K_M":
        assert {"Q4_K", "Q6_K", "F32"} <= set(info["tensor_types"])
    assert EXPERT_TYPE[ftype] in run_cli("info", path, check=True).stdout
    traces = []
    for capture in ("native", "callback"):
        out = tmp_path / f"{capture}.moetrace"
        run_cli("record", "-m", path, "--prompt", TEXT * 3, "-o", out, "--max-tokens", 6, "--temperature", 0,
                "--probs", "--capture", capture, "--n-ctx", 512, check=True)
        traces.append(load(out))
    assert traces[0].settings["capture"] == "native" and traces[1].settings["capture"] == "callback"
    assert_same_routing(*traces)


# ---- the Qwen3-30B-A3B-shaped fixture ---------------------------------------------------

@pytest.fixture(scope="session")
def qwen3_30b(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("qwen3-30b") / "qwen3-30b-a3b-shape.gguf", QWEN3_30B_SHAPE)


def test_qwen3_30b_shape_info(qwen3_30b):
    assert qwen3_30b.stat().st_size < 100 << 20
    info = json.loads(run_cli("info", qwen3_30b, "--json", check=True).stdout)
    assert info["architecture"] == "qwen3moe" and info["n_layer"] == 48 and info["moe_layers"] == list(range(48))
    assert info["n_expert"] == 128 and info["n_expert_used"] == 8 and info["n_vocab"] == 151_936
    assert info["gating"] == "softmax" and info["weights_normalized"] is True and info["dense_layers"] == []
    assert set(info["tensor_types"]) == {"Q8_0", "F32"}


@needs_native
def test_qwen3_30b_shape_record_native_equals_callback(qwen3_30b, tmp_path):
    """A prompt of more than one ubatch: the callback prefills it in chunks (logits for every
    row of a 151,936-token vocabulary), native in whole ubatches; the traces are identical."""
    traces = []
    for capture in ("native", "callback"):
        out = tmp_path / f"{capture}.moetrace"
        run_cli("record", "-m", qwen3_30b, "--prompt", TEXT * 17, "-o", out, "--max-tokens", 6,
                "--temperature", 0, "--probs", "--capture", capture, "--n-ctx", 1024, "--threads", 1,
                check=True, timeout=600)
        traces.append(load(out))
    a, b = traces
    assert 512 < a.n_prompt < 1000 and a.n_tokens == a.n_prompt + 6
    assert a.expert_ids.shape == (a.n_tokens, 48, 8) and a.probs.shape == (a.n_tokens, 48, 128)
    assert_same_routing(a, b)


@needs_native
def test_qwen3_30b_shape_native_equals_callback_at_chunk_edges(qwen3_30b):
    """Prompt lengths around the edges of native's ubatches and the callback's chunks (the
    callback's chunk here is 128 rows: 64 MiB of logits would be 110)."""
    # one thread: on a busy 2-core machine ggml's thread barriers make two threads 5-10x slower
    engines = [Engine(qwen3_30b, n_ctx=1024, n_threads=1, capture=c) for c in ("native", "callback")]
    try:
        base = engines[0].prompt_tokens(TEXT * 20)
        # 63: below flash attention's 64-row tile; 530: a native ubatch of 18; 600: chunks of
        # 102-103 then 88; 700: the second ubatch split in two
        spans = {}
        for e in engines:
            decode = e._decode

            def spy(tokens, pos0, *rest, decode=decode, log=spans.setdefault(e.capture.name, []), **kw):
                log.append((pos0, pos0 + len(tokens)))
                return decode(tokens, pos0, *rest, **kw)
            e._decode = spy
        for n in (63, 530, 600, 700):
            for log in spans.values():
                log.clear()
            a, b = (e.replay(base[:n] + [7, 1000, 150_000], n, probs=True) for e in engines)
            # the prompt's llama_decode calls (the 3 given tokens after it are one-row decode
            # steps, engine.decode_rows): native: llama.cpp's ubatches; callback: each split
            # evenly, 64 to 128 rows, or left whole
            assert spans["native"] == [(s, min(s + 512, n)) for s in range(0, n, 512)]
            chunks = spans["callback"]
            assert chunks[0][0] == 0 and chunks[-1][1] == n and all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
            for s, e in chunks:
                assert s // 512 == (e - 1) // 512 and e - s <= 128
                assert e - s >= 64 or (s % 512 == 0 and e == min(s + 512, n))
            np.testing.assert_array_equal(a.expert_ids, b.expert_ids, err_msg=f"{n}-token prompt")
            np.testing.assert_array_equal(a.weights, b.weights, err_msg=f"{n}-token prompt")
            np.testing.assert_array_equal(a.probs, b.probs, err_msg=f"{n}-token prompt")
    finally:
        for e in engines:
            e.close()


@pytest.fixture(scope="module")
def qwen3_server(qwen3_30b, tmp_path_factory):
    with ServerProcess("--model", qwen3_30b, "--n-ctx", "2048", "--threads", "1",
                       "--data-dir", tmp_path_factory.mktemp("runs"), timeout=300) as s:
        yield s


def test_qwen3_30b_shape_serve_websocket(qwen3_server):
    from websockets.sync.client import connect

    from moeviz.trace.messages import TraceAssembler

    with connect(qwen3_server.ws_url, max_size=None) as ws:
        hello = json.loads(ws.recv(timeout=60))
        while hello["type"] != "model":     # e.g. load progress first
            hello = json.loads(ws.recv(timeout=60))
        model = hello["model"]
        assert model["n_expert"] == 128 and model["n_expert_used"] == 8 and len(model["moe_layers"]) == 48
        assert model["n_vocab"] == 151_936 and model["architecture"] == "qwen3moe"
        ws.send(json.dumps({"type": "generate", "text": TEXT * 2, "max_tokens": 5, "seed": 1, "probs": True}))
        msgs = []
        while not msgs or msgs[-1]["type"] not in ("done", "error"):
            msgs.append(json.loads(ws.recv(timeout=120)))
    assert msgs[-1]["type"] == "done", msgs[-1]
    tokens = [m for m in msgs if m["type"] == "token"]
    assert len(tokens) == msgs[-1]["finish"]["n_generated"] > 0
    assert all(np.shape(m["expert_ids"]) == (48, 8) and np.shape(m["probs"]) == (48, 128) for m in tokens)
    asm = TraceAssembler()
    for m in [hello] + msgs:
        asm.add(m)
    t = asm.trace()
    assert t.expert_ids.shape == (t.n_tokens, 48, 8) and ((t.expert_ids >= 0) & (t.expert_ids < 128)).all()


@pytest.mark.browser
def test_qwen3_30b_shape_page_heatmap(qwen3_server):
    from browser import CHROMIUM, DORMANT_RGB, Page, launch

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        pg = Page(browser, qwen3_server.url + "/")
        try:
            trace, done = pg.generate(text=TEXT * 3, max_tokens=6, seed=2)
            assert pg.js("moeviz.model.n_expert") == 128 and len(pg.js("moeviz.model.moe_layers")) == 48
            L, E = 48, 128
            assert trace.expert_ids.shape[1:] == (L, 8) and pg.js("moeviz.tokens") == trace.n_tokens
            # 48 x 128 cells, each its own spot on the canvas, inside it
            centers = pg.js(f"""(() => {{ const out = [];
                for (let l = 0; l < {L}; l++) for (let e = 0; e < {E}; e++) {{
                    const c = moeviz.cellCenter('heatmap', l, e); out.push([c.x, c.y]); }}
                const cv = document.getElementById('heatmap-canvas');
                return {{ out, w: cv.width, h: cv.height }}; }})()""")
            xy = np.array(centers["out"])
            assert len({tuple(c) for c in xy}) == L * E
            assert (xy >= 0).all() and (xy[:, 0] < centers["w"]).all() and (xy[:, 1] < centers["h"]).all()
            assert len(np.unique(xy[:, 0])) == E and len(np.unique(xy[:, 1])) == L
            # a cell is dormant-coloured exactly when the run never selected it
            flat = trace.expert_ids + (np.arange(L) * E)[None, :, None]
            c = np.bincount(flat.ravel(), minlength=L * E).reshape(L, E)
            pixels = np.array(pg.cell_pixels("heatmap", L, E)).reshape(L, E, 3)
            dormant = (pixels == DORMANT_RGB).all(axis=2)
            assert (dormant == (c == 0)).all() and (~dormant).sum() > 0
            assert pg.js("moeviz.expertsHit") == int((c > 0).sum())
            assert pg.errors == []
        finally:
            pg.close()
            browser.close()
