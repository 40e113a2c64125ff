"""Permalinks: runs kept on disk behind random ids; nothing else reachable; limits; public mode."""
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from moeviz.server import ServerSettings, create_app
from moeviz.trace import loads
from moeviz.trace.io import dumps as trace_bytes
from moeviz.trace.store import RUN_ID, RunStore


def generate(client, **req):
    """The run's last message (done or error), with the `start` message's run id as `started`."""
    with client.websocket_connect("/ws") as ws:
        ws.receive_text()
        ws.send_text(json.dumps({"type": "generate", **req}))
        started = None
        while True:
            m = json.loads(ws.receive_text())
            if m["type"] == "start":
                started = m["run"]
            if m["type"] in ("done", "error"):
                return {**m, "started": started}


@pytest.fixture()
def app_factory(engines, tmp_path):
    def make(**kw):
        return TestClient(create_app(engines("llama", "native"), ServerSettings(data_dir=tmp_path / "runs", **kw)))
    return make


def test_a_finished_run_gets_a_permalink_that_reopens_it(app_factory):
    with app_factory() as c:
        done = generate(c, prompt_name="code-fibonacci", max_tokens=5, temperature=0.0)
        link = done["permalink"]
        run_id = link.rsplit("/", 1)[1]
        assert RUN_ID.match(run_id) and run_id == done["started"]    # the id `start` announced
        page = c.get(link)
        assert page.status_code == 200 and "moeviz" in page.text
        t = loads(c.get(f"/api/runs/{run_id}").content)
        assert t.n_tokens == done["finish"]["n_prompt"] + 5 and t.settings["prompt_name"] == "code-fibonacci"
        b = loads(c.get(f"/api/runs/{run_id}.moetrace").content)
        assert b.equals(t)


def test_a_runs_statistics_are_moeviz_stats_of_its_trace(app_factory, tmp_path, capsys):
    import argparse

    from moeviz.analysis import cli as stats_cli

    with app_factory() as c:
        done = generate(c, prompt_name="code-fibonacci", max_tokens=6, temperature=0.0)
        run_id = done["started"]
        (tmp_path / "run.moetrace").write_bytes(c.get(f"/api/runs/{run_id}.moetrace").content)
        parser = argparse.ArgumentParser()
        stats_cli.add_stats_parser(parser.add_subparsers())
        for sel in ("all", "generated"):
            got = c.get(f"/api/runs/{run_id}/stats", params={"tokens": sel})
            assert got.status_code == 200
            stats_cli.cmd_stats(parser.parse_args(["stats", str(tmp_path / "run.moetrace"), "--json", "--tokens", sel]))
            want = json.loads(capsys.readouterr().out)
            want["traces"][0]["trace"] = run_id
            assert got.json() == want
        assert got.json()["traces"][0]["tokens"]["count"] == 6
        bad = c.get(f"/api/runs/{run_id}/stats", params={"tokens": "some"})
        assert bad.status_code == 400 and "tokens must be one of all, prompt, generated" in bad.json()["error"]
        assert c.get("/api/runs/AAAAAAAAAAAAAAAA/stats").status_code == 404
        assert c.get("/api/runs/..%2F..%2Fx/stats").status_code == 404


def test_a_taken_id_is_not_overwritten(tmp_path, engines):
    store = RunStore(tmp_path)
    with TestClient(create_app(engines("llama", "native"), ServerSettings(data_dir=tmp_path))) as c:
        first = generate(c, prompt_name="code-fibonacci", max_tokens=2, temperature=0.0)["permalink"].rsplit("/", 1)[1]
    again = store.save(store.load(first), first)
    assert again != first and RUN_ID.match(again) and store.load(again).equals(store.load(first))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "AAAAAAAAAAAAAAA",
                                 "AAAAAAAAAAAAAAAAA", "aaaaaaaaaaaaaaa.", "x" * 300])
def test_traversal_and_malformed_ids_are_refused(app_factory, bad):
    with app_factory() as c:
        for url in (f"/r/{bad}", f"/api/runs/{bad}"):
            r = c.get(url)
            assert r.status_code == 404, url
            assert "root:" not in r.text


def test_uploads_are_validated_and_size_limited(app_factory, engines):
    with app_factory(max_upload_bytes=4096) as c:
        assert c.post("/api/runs", content=b"\x00garbage").status_code == 400
        assert "not a moeviz trace" in c.post("/api/runs", content=b'{"format": "x"}').json()["error"]
        r = c.post("/api/runs", content=b"{" + b" " * 10000 + b"}")
        assert r.status_code == 413 and "the limit is 4096" in r.json()["error"]
    with app_factory() as c:
        done = generate(c, text="hello", max_tokens=3)
        raw = c.get(f"/api/runs/{done['permalink'].rsplit('/', 1)[1]}.moetrace").content
        r = c.post("/api/runs", content=raw)
        assert r.status_code == 200 and c.get(r.json()["url"]).status_code == 200


def test_a_run_too_big_to_keep_still_ends_with_done(app_factory):
    with app_factory(max_run_bytes=1000) as c:
        done = generate(c, prompt_name="code-fibonacci", max_tokens=3, temperature=0.0)
        assert done["type"] == "done" and done["finish"]["n_generated"] == 3 and "permalink" not in done
        assert "this server keeps runs up to 1000" in done["permalink_error"]
        assert done["summary"]["experts_hit"] > 0
        assert generate(c, text="hi", max_tokens=1)["type"] == "done"      # the worker is fine


def test_store_is_bounded_and_atomic(tmp_path, engines):
    from moeviz.engine import SamplingSettings
    from moeviz.trace.builder import TraceBuilder

    e = engines("llama", "native")
    b = TraceBuilder(e.info, "x", {})
    for ev in e.generate("hello there", SamplingSettings(max_tokens=2)):
        b.add(ev)
    t = b.trace()
    store = RunStore(tmp_path, max_runs=3)
    ids = [store.save(t) for _ in range(5)]
    kept = {r[0] for r in store.runs()}
    assert len(kept) == 3 and set(ids[-1:]) <= kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.moetrace" for i in kept)
    small = RunStore(tmp_path / "small", max_bytes=len(trace_bytes(t, binary=True)) * 2 + 10)
    for _ in range(4):
        small.save(t)
    assert len(small.runs()) == 2
    np.testing.assert_array_equal(store.load(ids[-1]).expert_ids, t.expert_ids)


def test_public_mode(app_factory):
    with app_factory(public=True, rate_limit_per_minute=2) as c:
        limits = c.get("/api/limits").json()
        assert limits["max_tokens"] <= 256 and limits["max_prompt_tokens"] <= 512
        assert c.post("/api/runs", content=b"{}").status_code == 403
        assert "over this server's limit of 256" in generate(c, text="hi", max_tokens=1000)["message"]
        assert generate(c, text="hi", max_tokens=2)["type"] == "done"
        assert generate(c, text="hi", max_tokens=2)["type"] == "done"
        err = generate(c, text="hi", max_tokens=2)
        assert err["type"] == "error" and err["message"].startswith("rate limit: 2 generations a minute")
