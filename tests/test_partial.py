"""A long run's head (moeviz/trace/partial.py): the first tokens of a binary trace as a
binary trace of their own, cut from bytes (export) or from a stored file (the server's
/api/runs/<id>.moetrace?head=<n>); a stored file read without loading it (the
permalink page's title, description and model)."""
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from moeviz.export import export_site
from moeviz.preview import run_description, run_title, selection_counts, used_experts
from moeviz.server import ServerSettings, create_app
from moeviz.trace import Trace, loads
from moeviz.trace.io import dumps
from moeviz.trace.partial import HEAD_TOKENS, binary_head, head_bytes, open_stored, trace_of
from moeviz.trace.store import RunStore


def long_trace(n=3000, n_prompt=40, L=3, E=16, k=4, probs=False, seed=0) -> Trace:
    """A synthetic run of n tokens (a model of L MoE layers, top-k of E)."""
    rng = np.random.default_rng(seed)
    ids = np.argsort(rng.random((n, L, E)), axis=2)[:, :, :k].astype(np.int32)
    weights = rng.random((n, L, k)).astype(np.float32)
    p = rng.random((n, L, E)).astype(np.float32) if probs else None
    model = {"name": "synthetic", "architecture": "synthetic", "n_layer": L + 1, "moe_layers": list(range(1, L + 1)),
             "dense_layers": [0], "n_expert": E, "n_expert_used": k, "n_shared_experts": 0, "gating": "softmax",
             "total_params": 0, "active_params": 0}
    tokens = [{"id": int(i % 97), "text": f" w{i % 97}", "prompt": i < n_prompt} for i in range(n)]
    return Trace(model, "a long run", {"prompt_title": "long"}, tokens, ids, weights, probs=p,
                 finish={"reason": "length", "n_prompt": n_prompt, "n_generated": n - n_prompt,
                         "prefill_seconds": 0.5, "decode_seconds": 9.0}).validate()


def check_head(data: bytes, trace: Trace, n: int):
    head = loads(data)           # a valid trace of its own
    assert json.loads(data[12:12 + int.from_bytes(data[8:12], "little")])["partial"] == {"n_tokens": trace.n_tokens}
    assert head.tokens == trace.tokens[:n] and head.finish is None
    assert np.array_equal(head.expert_ids, trace.expert_ids[:n]) and np.array_equal(head.weights, trace.weights[:n])
    assert (head.probs is None) == (trace.probs is None)
    if trace.probs is not None:
        assert np.array_equal(head.probs, trace.probs[:n])
    assert head.model == trace.model and head.prompt == trace.prompt and head.settings == trace.settings


@pytest.mark.parametrize("probs", [False, True])
def test_the_head_of_a_long_trace_is_its_first_tokens_marked_partial(probs, tmp_path):
    trace = long_trace(probs=probs)
    data = dumps(trace, binary=True)
    check_head(binary_head(data), trace, HEAD_TOKENS)
    check_head(binary_head(data, 7), trace, 7)
    path = tmp_path / "t.moetrace"
    path.write_bytes(data)
    assert head_bytes(*open_stored(path), 7) == binary_head(data, 7)
    # a run no longer than the head is its own head
    assert binary_head(data, trace.n_tokens) is None and head_bytes(*open_stored(path), 10**6) is None


def test_a_stored_file_read_in_place_describes_the_run_as_its_trace_does(tmp_path):
    trace = long_trace()
    path = tmp_path / "t.moetrace"
    path.write_bytes(dumps(trace, binary=True))
    read = trace_of(*open_stored(path))
    assert read.equals(trace)
    assert run_title(read) == run_title(trace) and run_description(read) == run_description(trace)
    assert (used_experts(read) == (selection_counts(trace) > 0)).all()


def test_a_site_ships_a_long_runs_head_next_to_it(tmp_path):
    long, short = long_trace(), long_trace(n=50, seed=1)
    site = export_site(tmp_path / "site", [("long", long), ("short", short)])
    runs = {e["name"]: e for e in json.loads((site / "manifest.json").read_text())["runs"]}
    assert runs["long"]["file"] == "runs/long.moetrace" and runs["long"]["head"] == "runs/long.head.moetrace"
    check_head((site / runs["long"]["head"]).read_bytes(), long, HEAD_TOKENS)
    assert "head" not in runs["short"] and not (site / "runs/short.head.moetrace").exists()
    # the page preloads what it fetches first: the manifest and the first run's head
    page = (site / "index.html").read_text()
    for url in ("manifest.json", "runs/long.head.moetrace"):
        assert f'<link rel="preload" href="{url}" as="fetch" crossorigin="anonymous">' in page
    assert '<link rel="modulepreload" href="static/js/state.js">' in page


def test_the_page_asks_for_the_heads_the_server_and_export_cut():
    replay = (Path(__file__).resolve().parents[1] / "web/js/replay.js").read_text()
    assert f"export const HEAD_TOKENS = {HEAD_TOKENS};" in replay


def test_the_server_cuts_a_stored_runs_head_and_names_its_model(engines, tmp_path):
    store = RunStore(tmp_path / "runs")
    trace = long_trace()
    run_id = store.save(trace)
    app = create_app(engines("llama", "native"), ServerSettings(data_dir=tmp_path / "runs"))
    with TestClient(app) as c:
        check_head(c.get(f"/api/runs/{run_id}.moetrace?head=100").content, trace, 100)
        # no more tokens than asked for: the whole run, as stored
        assert c.get(f"/api/runs/{run_id}.moetrace?head={10**6}").content == store.load_bytes(run_id)
        assert c.get(f"/api/runs/{run_id}.moetrace").content == store.load_bytes(run_id)
        assert c.get("/api/runs/AAAAAAAAAAAAAAAA.moetrace?head=100").status_code == 404
        page = c.get(f"/r/{run_id}")
        assert page.status_code == 200 and str(escape(run_description(trace))) in page.text
        # the page starts with the run's model, not the server's
        config = json.loads(page.text.split('id="moeviz-config" type="application/json">')[1].split("</script>")[0])
        assert config["model"] == trace.model and config["mode"] == "replay" and config["run_id"] == run_id
        # its head preloaded, the URL the page asks for (../api/runs/<id>.moetrace?head=<HEAD_TOKENS> from /r/<id>)
        assert (f'<link rel="preload" href="/api/runs/{run_id}.moetrace?head={HEAD_TOKENS}" as="fetch" '
                'crossorigin="anonymous">') in page.text
