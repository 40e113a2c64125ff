"""GET /metrics: a real `moeviz serve`, two runs over the websocket, then the Prometheus
text parsed with prometheus_client's parser; its counters equal the runs' routing."""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serverproc import ServerProcess
from websockets.sync.client import connect

from moeviz.server.metrics import ServerMetrics
from moeviz.trace import loads
from moeviz.trace.summary import dormant

pytestmark = pytest.mark.slow


def generate(ws_url, **request):
    with connect(ws_url) as ws:
        ws.recv()   # model
        ws.send(json.dumps({"type": "generate", **request}))
        while True:
            msg = json.loads(ws.recv(timeout=60))
            if msg["type"] in ("done", "error"):
                return msg


def scrape(url) -> dict:
    """{(sample name, sorted labels): value} and the families' types."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def test_metrics_equal_the_runs_routing(fixture_models, tmp_path):
    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "1024", "--data-dir", tmp_path,
                       "--metrics-per-expert") as server:
        before, _ = scrape(server.url)
        assert before[("llamacpp:prompt_tokens_total", ())] == 0
        assert before[("llamacpp:requests_processing", ())] == 0
        dones = [generate(server.ws_url, text="Once upon a time", max_tokens=12, seed=3, mask=[[2, 0]]),
                 generate(server.ws_url, prompt_name="story-lighthouse", max_tokens=20, seed=5,
                          experts_per_token=2, mask=[[2, 0]])]
        assert [d["type"] for d in dones] == ["done", "done"], dones
        traces = []
        for d in dones:
            run_id = d["permalink"].rsplit("/", 1)[-1]
            with urllib.request.urlopen(f"{server.url}/api/runs/{run_id}", timeout=10) as r:
                traces.append(loads(r.read()))
        got, types = scrape(server.url)

    finish = [d["finish"] for d in dones]
    assert [t.n_prompt for t in traces] == [f["n_prompt"] for f in finish]
    assert [t.n_tokens - t.n_prompt for t in traces] == [f["n_generated"] for f in finish]
    n_prompt = sum(f["n_prompt"] for f in finish)
    n_generated = sum(f["n_generated"] for f in finish)
    assert got[("llamacpp:prompt_tokens_total", ())] == n_prompt
    assert got[("llamacpp:tokens_predicted_total", ())] == n_generated
    assert got[("llamacpp:prompt_seconds_total", ())] == pytest.approx(sum(f["prefill_seconds"] for f in finish))
    assert got[("llamacpp:tokens_predicted_seconds_total", ())] == pytest.approx(
        sum(f["decode_seconds"] for f in finish))
    assert got[("llamacpp:prompt_tokens_seconds", ())] == pytest.approx(
        n_prompt / sum(f["prefill_seconds"] for f in finish), rel=1e-6)
    assert got[("llamacpp:predicted_tokens_seconds", ())] == pytest.approx(
        n_generated / sum(f["decode_seconds"] for f in finish), rel=1e-6)
    assert got[("llamacpp:n_tokens_max", ())] == max(t.n_tokens for t in traces)
    assert got[("llamacpp:requests_processing", ())] == 0 and got[("llamacpp:requests_deferred", ())] == 0
    assert types["llamacpp:prompt_tokens"] == "counter" and types["llamacpp:requests_processing"] == "gauge"
    reasons = {}
    for f in finish:
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    for reason, n in reasons.items():
        assert got[("moeviz:runs_total", (("reason", reason), ("source", "page")))] == n
    assert got[("moeviz:routed_tokens_total", ())] == sum(t.n_tokens for t in traces)

    model = traces[0].model
    layers, n_expert = model["moe_layers"], model["n_expert"]
    assert [t.k for t in traces] == [model["n_expert_used"], 2]
    counts = np.zeros((len(layers), n_expert), np.int64)
    run_dormant = np.zeros(len(layers), np.int64)
    for t in traces:
        c = np.stack([np.bincount(t.expert_ids[:, i].ravel(), minlength=n_expert) for i in range(len(layers))])
        counts += c
        run_dormant += dormant(c)["count"]
    for i, layer in enumerate(layers):
        lab = (("layer", str(layer)),)
        assert got[("moeviz:expert_selections_total", lab)] == sum(t.n_tokens * t.k for t in traces)
        assert got[("moeviz:expert_selections_total", lab)] == counts[i].sum()
        assert got[("moeviz:dormant_experts", lab)] == int((counts[i] == 0).sum())
        assert got[("moeviz:run_dormant_experts_total", lab)] == run_dormant[i]
        for e in range(n_expert):
            assert got[("moeviz:expert_selections_by_expert_total", (("expert", str(e)), ("layer", str(layer))))] \
                == counts[i, e]
    # the masked expert was never selected: dormant in both runs and since the start
    li = layers.index(2)
    assert counts[li, 0] == 0 and got[("moeviz:dormant_experts", (("layer", "2"),))] >= 1
    assert run_dormant[li] >= 2
    # the done messages' own summaries agree
    assert run_dormant.tolist() == np.sum([d["summary"]["dormant_per_layer"] for d in dones], axis=0).tolist()


def test_no_metrics_turns_the_endpoint_off(fixture_models, tmp_path):
    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "256", "--data-dir", tmp_path,
                       "--no-metrics") as server:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
        assert e.value.code == 404


class FakeTrace:
    def __init__(self, ids, n_prompt, layers):
        self.expert_ids = np.asarray(ids, np.int32)
        self.model = {"moe_layers": layers}
        self.tokens = [{"prompt": i < n_prompt} for i in range(len(ids))]
        self.finish = {"reason": "length", "prefill_seconds": 0.5, "decode_seconds": 0.25}

    n_tokens = property(lambda self: len(self.tokens))
    n_prompt = property(lambda self: sum(t["prompt"] for t in self.tokens))


def test_registries_are_per_app_and_per_expert_is_opt_in():
    a = ServerMetrics([3, 5], 4, lambda: (1, 2))
    b = ServerMetrics([3, 5], 4, lambda: (0, 0), per_expert=True)
    a.run_finished(FakeTrace([[[0, 1], [2, 3]], [[0, 2], [2, 3]], [[1, 0], [3, 2]]], 2, [3, 5]), "api")
    fams = {f.name: f for f in text_string_to_metric_families(a.exposition().decode())}
    assert "moeviz:expert_selections_by_expert" not in fams
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert value[("llamacpp:prompt_tokens_total", ())] == 2 and value[("llamacpp:tokens_predicted_total", ())] == 1
    assert value[("llamacpp:requests_processing", ())] == 1 and value[("llamacpp:requests_deferred", ())] == 2
    assert value[("moeviz:expert_selections_total", (("layer", "3"),))] == 6
    assert value[("moeviz:dormant_experts", (("layer", "3"),))] == 1       # expert 3 never
    assert value[("moeviz:dormant_experts", (("layer", "5"),))] == 2       # experts 0 and 1 never
    assert value[("moeviz:runs_total", (("reason", "length"), ("source", "api")))] == 1
    fams_b = {f.name: f for f in text_string_to_metric_families(b.exposition().decode())}
    assert len(fams_b["moeviz:expert_selections_by_expert"].samples) == 2 * 4
    assert all(s.value == 0 for s in fams_b["moeviz:expert_selections_by_expert"].samples)   # b saw none of a's run


def test_a_run_cancelled_while_queued_is_counted(fixture_models, tmp_path):
    """It ends with `done` (reason cancelled) like any run, so moeviz:runs counts it."""
    with ServerProcess("--model", fixture_models["deepseek2"], "--n-ctx", "1024", "--data-dir", tmp_path) as server:
        with connect(server.ws_url) as busy, connect(server.ws_url) as waiting:
            busy.recv()
            waiting.recv()
            busy.send(json.dumps({"type": "generate", "text": "Once upon a time", "max_tokens": 400}))
            while json.loads(busy.recv(timeout=60))["type"] != "token":
                pass
            waiting.send(json.dumps({"type": "generate", "text": "hello", "max_tokens": 4}))
            assert json.loads(waiting.recv(timeout=60))["type"] == "queued"
            waiting.send(json.dumps({"type": "cancel"}))
            done = json.loads(waiting.recv(timeout=60))
            assert done["type"] == "done" and done["finish"]["reason"] == "cancelled"
            busy.send(json.dumps({"type": "cancel"}))
            while json.loads(busy.recv(timeout=60))["type"] != "done":
                pass
        got, _ = scrape(server.url)
    cancelled = {k: v for k, v in got.items() if k[0] == "moeviz:runs_total" and ("reason", "cancelled") in k[1]}
    assert sum(cancelled.values()) == 2, cancelled   # the queued one and the one cancelled mid-run
