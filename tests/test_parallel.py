"""Parallel requests (serve --parallel N, engine/slots.py): several runs decoded in one
llama.cpp batch, routing split per sequence, each run equal to the same run alone.

With --kv-type f32 --flash-attn off, every architecture's runs agree with runs alone on
every token and every expert id; gate weights differ by float rounding only (the decode
step's matrix products over several rows). On quantized weights the several-row kernels
differ more (repacked GEMMs), and a routing decision can flip where the router's top-k
margin is a near-tie: measured here, and only there (docs/openai-api.md).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from parallel_check import compare, routing_of, run_alone, run_batched
from serverproc import ServerProcess
from test_archs import ARCHS, NATIVE, arch_models, model_path  # noqa: F401 - the fixture
from test_real_shapes import quantized  # noqa: F401 - the fixture
from websockets.sync.client import connect

from moeviz.engine import BusyError, Engine, Finished, PromptError, SamplingSettings, TokenRouted
from moeviz.engine.slots import Run, Scheduler
from moeviz.llama.model import ContextSettingsError

GREEDY = SamplingSettings(max_tokens=12, temperature=0.0)
EXACT = dict(kv_type="f32", flash_attn="off")
# prompts of different lengths, so prefills and decode steps overlap in every way
TOKEN_PROMPTS = [list(range(1, 21)), [5, 9, 2, 7], list(range(30, 42)), [100, 3, 120], [7], list(range(60, 95))]
DEMO_PROMPTS = ["def fibonacci(n):", "import os\nimport sys\n\ndef main():", "The with statement",
                "class Queue:\n    \"\"\"", "for i in range(10):", "# Copyright"]
NEAR_TIE = 1e-3   # a router margin (k-th minus (k+1)-th probability) below this is a near-tie


def engines_for(path, n, capture="auto", **kw):
    base = dict(n_ctx=256, n_batch=64, n_ubatch=16, capture=capture, **EXACT, **kw)
    return Engine(path, **base), Engine(path, **{**base, "n_ctx": 256 * n}, parallel=n)


def assert_agree(results):
    for r in results:
        assert r.same_tokens and r.same_ids, r
        assert r.reason == r.alone_reason, r
        assert r.max_weight_diff < 1e-5, r


@pytest.mark.parametrize("arch", [a for a, kind in ARCHS.items() if kind == NATIVE])
def test_parallel_equals_alone_on_every_architecture(arch_models, arch):  # noqa: F811
    alone, batched = engines_for(model_path(arch_models, arch), 4)
    try:
        assert batched.lm.n_seq_max == 4 and batched.lm.n_ctx_seq >= 256
        results = compare(alone, batched, TOKEN_PROMPTS, GREEDY)   # 6 prompts through 4 slots
    finally:
        alone.close()
        batched.close()
    assert_agree(results)


@pytest.mark.parametrize("arch", ["qwen3moe", "gpt-oss", "qwen3next", "deepseek2"])
def test_parallel_with_the_callback_backend(arch_models, arch):  # noqa: F811
    alone, batched = engines_for(model_path(arch_models, arch), 3, capture="callback")
    try:
        results = compare(alone, batched, TOKEN_PROMPTS[:4], GREEDY)
    finally:
        alone.close()
        batched.close()
    assert_agree(results)


@pytest.fixture(scope="module")
def demo_pair():
    from moeviz.demo import default_model_path

    alone = Engine(default_model_path(), n_ctx=1024, **EXACT)
    batched = Engine(default_model_path(), n_ctx=4096, parallel=4, **EXACT)
    yield alone, batched
    alone.close()
    batched.close()


def test_demo_model_text_prompts_greedy_and_sampled(demo_pair):
    alone, batched = demo_pair
    assert_agree(compare(alone, batched, DEMO_PROMPTS, SamplingSettings(max_tokens=20, temperature=0.0)))
    # a seeded sampler per run: the same draws as alone, whatever runs beside it
    assert_agree(compare(alone, batched, DEMO_PROMPTS[:4], SamplingSettings(max_tokens=20, temperature=0.9, seed=11)))


def test_stop_strings_eos_and_max_tokens_zero_end_each_run_alone(demo_pair):
    alone, batched = demo_pair
    full = run_alone(alone, DEMO_PROMPTS[0], SamplingSettings(max_tokens=20, temperature=0.0))
    text = "".join(e.token.text for e in full if hasattr(e, "token"))
    stop = text.strip()[2:5]
    settings = [SamplingSettings(max_tokens=20, temperature=0.0, stop=[stop]), SamplingSettings(max_tokens=0),
                SamplingSettings(max_tokens=20, temperature=0.0)]
    # each run's own settings: one batch holds all three
    batch = Scheduler(batched)
    events = [[] for _ in settings]
    for i, s in enumerate(settings):
        batch.add(i, Run(batched.prompt_tokens(DEMO_PROMPTS[0]), s, probs=True))
    while batch.active():
        for key, ev in batch.step():
            events[key].append(ev)
    for s, evs in zip(settings, events):
        ref = run_alone(alone, DEMO_PROMPTS[0], s)
        assert [type(e) for e in evs] == [type(e) for e in ref]
        assert evs[-1].reason == ref[-1].reason and evs[-1].n_generated == ref[-1].n_generated
    assert events[0][-1].reason == "stop" and events[1][-1].reason == "length" and events[1][-1].n_generated == 0


def test_a_cancelled_run_leaves_the_others_exact(demo_pair):
    alone, batched = demo_pair
    cancel = threading.Event()
    cancel.set()   # cancelled before its first step: ends with Finished(cancelled), nothing decoded
    events = run_batched(batched, DEMO_PROMPTS[:3], SamplingSettings(max_tokens=16, temperature=0.0),
                         cancel={1: cancel})
    assert [type(e) for e in events[1]] == [Finished] and events[1][0].reason == "cancelled"
    for i in (0, 2):
        ref = run_alone(alone, DEMO_PROMPTS[i], SamplingSettings(max_tokens=16, temperature=0.0))
        assert routing_of(events[i])[0] == routing_of(ref)[0]
        assert np.array_equal(routing_of(events[i])[1], routing_of(ref)[1])


def test_candidates_in_a_batch_equal_alone(demo_pair):
    alone, batched = demo_pair
    s = SamplingSettings(max_tokens=6, temperature=0.0)
    tokens = batched.prompt_tokens(DEMO_PROMPTS[2])
    batch = Scheduler(batched)
    batch.add("c", Run(tokens, s, candidates=5))
    batch.add("plain", Run(batched.prompt_tokens(DEMO_PROMPTS[0]), s))
    got = []
    while batch.active():
        got += [ev for key, ev in batch.step() if key == "c"]
    ref = list(alone.generate(tokens, s, candidates=5))
    for a, b in zip(got, ref):
        if hasattr(a, "routing"):
            assert np.array_equal(a.routing.candidate_ids, b.routing.candidate_ids)
            np.testing.assert_allclose(a.routing.candidate_probs, b.routing.candidate_probs, atol=1e-5)


def test_the_engine_is_busy_while_a_batch_runs(demo_pair):
    _, batched = demo_pair
    batch = Scheduler(batched)
    batch.add(0, Run(batched.prompt_tokens("x = 1"), SamplingSettings(max_tokens=3, temperature=0.0)))
    with pytest.raises(BusyError):
        list(batched.generate("y", SamplingSettings(max_tokens=1)))
    with pytest.raises(BusyError):
        batched.set_interventions(experts_per_token=1)
    while batch.active():
        batch.step()
    assert len(list(batched.generate("y", SamplingSettings(max_tokens=1, temperature=0.0)))) >= 2   # free again


def test_replay_is_a_slot_beside_sampled_runs(demo_pair):
    """`record --tokens-from` replay is a slot whose tokens are given: beside sampled runs
    its routing equals the same replay alone, and it ends when its tokens are decoded."""
    alone, batched = demo_pair
    ref = run_alone(alone, DEMO_PROMPTS[3], SamplingSettings(max_tokens=10, temperature=0.0))
    tokens, ids, _, _ = routing_of(ref)
    n_prompt = len(ref[0].tokens)
    sched = Scheduler(batched)
    sched.add("a", Run(batched.prompt_tokens(DEMO_PROMPTS[0]), SamplingSettings(max_tokens=12, temperature=0.0)))
    sched.add("replay", Run(tokens[:n_prompt], probs=True, given=tokens[n_prompt:]))
    sched.add("b", Run(batched.prompt_tokens(DEMO_PROMPTS[1]), SamplingSettings(max_tokens=3, temperature=0.9)))
    got = []
    while sched.active():
        got += [ev for key, ev in sched.step() if key == "replay"]
    assert isinstance(got[-1], Finished) and got[-1].reason == "length" and got[-1].n_generated == len(tokens) - n_prompt
    replayed = alone.replay(tokens, n_prompt, probs=True)
    r_tokens, r_ids, r_w, _ = routing_of(got[:-1])
    assert r_tokens == tokens and np.array_equal(r_ids, ids) and np.array_equal(r_ids, replayed.expert_ids)
    np.testing.assert_allclose(r_w, replayed.weights, atol=1e-5)


def test_a_group_of_runs_is_admitted_together_or_not_at_all(demo_pair):
    """n completions of one prompt (OpenAI `n`): add_group takes them all, each its own
    sequence equal to the same run alone, or none when fewer slots are free."""
    alone, batched = demo_pair
    tokens = batched.prompt_tokens(DEMO_PROMPTS[2])
    seeds = [SamplingSettings(max_tokens=8, temperature=0.9, seed=s) for s in (1, 2, 3)]
    sched = Scheduler(batched)
    sched.add("first", Run(tokens, SamplingSettings(max_tokens=2, temperature=0.0)))
    with pytest.raises(BusyError, match="4 runs need as many free slots; 3 of 4"):
        sched.add_group([(i, Run(tokens, SamplingSettings(max_tokens=8))) for i in range(4)])
    assert sched.free() == 3 and sched.keys() == ["first"]
    sched.add_group([(i, Run(tokens, s)) for i, s in enumerate(seeds)])
    events = {i: [] for i in range(3)}
    while sched.active():
        for key, ev in sched.step():
            if key != "first":
                events[key].append(ev)
    texts = set()
    for i, s in enumerate(seeds):
        ref = run_alone(alone, tokens, s)
        assert routing_of(events[i])[0] == routing_of(ref)[0]
        assert np.array_equal(routing_of(events[i])[1], routing_of(ref)[1])
        texts.add(tuple(routing_of(ref)[0]))
    assert len(texts) > 1   # the seeds drew different continuations


@pytest.mark.slow
def test_quantized_weights_flip_only_near_ties(quantized):  # noqa: F811
    """Quantized expert weights: the decode step's several-row kernels round otherwise
    than one row; a decision that flips must be a near-tie in the run alone."""
    flips, runs, weight_diff = 0, 0, {}
    for ftype in ("Q4_0", "Q4_K_M", "IQ4_NL", "Q8_0"):
        alone, batched = engines_for(quantized(ftype), 4)
        try:
            results = compare(alone, batched, TOKEN_PROMPTS, SamplingSettings(max_tokens=16, temperature=0.0))
        finally:
            alone.close()
            batched.close()
        for r in results:
            runs += 1
            # several rows through a repacked kernel quantize the activations otherwise (IQ4_NL: ~1%)
            assert r.max_weight_diff < 5e-2, (ftype, r)
            weight_diff[ftype] = max(weight_diff.get(ftype, 0.0), r.max_weight_diff)
            if r.first_diff is not None:
                flips += 1
                assert r.margin is not None and r.margin < NEAR_TIE, (ftype, r)
    print(f"quantized: {flips} of {runs} runs had a routing decision flip, each at a near-tie; "
          f"largest gate weight difference {weight_diff}")


def test_settings_are_checked_before_llama_cpp(demo_pair):
    from moeviz.demo import default_model_path

    for bad in (0, -1, 257):
        with pytest.raises(ContextSettingsError, match="parallel"):
            Engine(default_model_path(), n_ctx=1024, parallel=bad)
    with pytest.raises(ContextSettingsError, match="parallel"):
        Engine(default_model_path(), n_ctx=3, parallel=4)
    _, batched = demo_pair
    long_prompt = "x = 1\n" * 600   # > 1024 tokens, the context of each of the 4 sequences
    with pytest.raises(PromptError, match="parallel"):
        batched.prompt_tokens(long_prompt)


# ---- the server -------------------------------------------------------------------------

def ws_run(url, request, log, started=None, ready=None):
    with connect(url, max_queue=None, open_timeout=30) as ws:
        ws.recv(timeout=30)
        if ready is not None:   # a threading.Barrier: every client connected, then all send at once
            ready.wait(60)
        ws.send(json.dumps({"type": "generate", **request}))
        log.append((time.perf_counter(), {"type": "sent"}))
        while True:
            m = json.loads(ws.recv(timeout=180))
            log.append((time.perf_counter(), m))
            if m["type"] == "start" and started is not None:
                started.set()
            if m["type"] in ("done", "error"):
                return


@pytest.fixture(scope="module")
def par_server(tmp_path_factory):
    with ServerProcess("--parallel", "2", "--n-ctx", "2048", "--kv-type", "f32", "--flash-attn", "off",
                       "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


def test_server_runs_requests_together_each_equal_to_record(par_server, tmp_path):
    from conftest import run_cli
    from moeviz.trace import load
    import urllib.request

    assert "2 parallel requests of 1024 tokens each" in par_server.banner
    with urllib.request.urlopen(par_server.url + "/api/model", timeout=30) as r:
        model = json.loads(r.read())
    assert model["parallel"] == 2 and model["n_ctx_per_request"] == 1024
    logs = [[], []]
    prompts = [DEMO_PROMPTS[0], DEMO_PROMPTS[3]]
    ready = threading.Barrier(2)
    threads = [threading.Thread(target=ws_run, args=(par_server.ws_url, {"text": p, "max_tokens": 200, "temperature": 0},
                                                     logs[i], None, ready)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    processing, live_running = set(), set()
    while any(t.is_alive() for t in threads):   # both in flight at once: /metrics and the live list say so
        with urllib.request.urlopen(par_server.url + "/metrics", timeout=30) as r:
            line = [x for x in r.read().decode().splitlines() if x.startswith("llamacpp:requests_processing ")]
        processing.add(float(line[0].split()[1]))
        with urllib.request.urlopen(par_server.url + "/api/live", timeout=30) as r:
            live_running.add(sum(run["status"] == "running" for run in json.loads(r.read())["runs"]))
        time.sleep(0.05)
    for t in threads:
        t.join(300)
    assert 2.0 in processing and 2 in live_running, (processing, live_running)
    kinds = [[m["type"] for _, m in log] for log in logs]
    assert all(k[-1] == "done" and "queued" not in k for k in kinds), kinds
    # together: each run's tokens arrived while the other was generating
    first_token = [min(t for t, m in log if m["type"] == "token") for log in logs]
    done = [log[-1][0] for log in logs]
    assert first_token[1] < done[0] and first_token[0] < done[1]
    for i, p in enumerate(prompts):
        run = logs[i][-1][1]["permalink"].rsplit("/", 1)[1]
        with urllib.request.urlopen(f"{par_server.url}/api/runs/{run}.moetrace", timeout=30) as r:
            (tmp_path / f"{i}.moetrace").write_bytes(r.read())
        served = load(tmp_path / f"{i}.moetrace")
        run_cli("record", "--prompt", p, "--max-tokens", "200", "--temperature", "0", "--kv-type", "f32",
                "--flash-attn", "off", "--out", tmp_path / f"{i}.json", check=True)
        alone = load(tmp_path / f"{i}.json")
        assert [t["id"] for t in served.tokens] == [t["id"] for t in alone.tokens]
        assert np.array_equal(served.expert_ids, alone.expert_ids)


def test_server_a_run_with_other_interventions_waits_and_keeps_its_place(par_server):
    logs = [[], [], []]
    started = [threading.Event() for _ in logs]
    # A long enough (900 tokens, ~1 s on an idle machine) that B and C arrive while it runs
    requests = [{"text": DEMO_PROMPTS[0], "max_tokens": 900, "temperature": 0},
                {"text": DEMO_PROMPTS[1], "max_tokens": 5, "temperature": 0, "experts_per_token": 1},
                {"text": DEMO_PROMPTS[2], "max_tokens": 5, "temperature": 0}]
    threads = []
    for i, req in enumerate(requests):   # in this order: A starts, B (top-1) must wait for A, C behind B
        threads.append(threading.Thread(target=ws_run, args=(par_server.ws_url, req, logs[i], started[i])))
        threads[-1].start()
        if i == 0:
            assert started[0].wait(60)
        else:
            time.sleep(0.05)
    for t in threads:
        t.join(300)
    at = [{m["type"]: t for t, m in reversed(log)} for log in logs]   # first time of each kind
    assert all(log[-1][1]["type"] == "done" for log in logs), [log[-1] for log in logs]
    # times are when each client thread read the message: the server sends A's done and then B's
    # start back to back, and two threads can read them 0.06 ms apart the other way round (seen
    # under load). SKEW absorbs that; a B that did not wait would start a whole run earlier.
    skew = 0.02
    assert at[1]["start"] > at[0]["done"] - skew   # the router change waited for the running run
    assert at[2]["start"] >= at[1]["start"] - skew  # and the run behind it did not jump ahead
    assert at[0]["done"] > at[2]["sent"] + 3 * skew, "A ended before C was sent: nothing was tested"
    assert logs[1][-1][1]["finish"]["n_generated"] == 5


def test_openai_clients_in_parallel(par_server):
    openai = pytest.importorskip("openai")
    import base64

    out = {}
    with openai.OpenAI(base_url=par_server.url + "/v1", api_key="x", max_retries=0, timeout=180) as client:
        def ask(i):
            out[i] = client.completions.create(model="m", prompt=DEMO_PROMPTS[i], max_tokens=16, temperature=0,
                                               extra_body={"return_routed_experts": True})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for i in range(4):
            alone = client.completions.create(model="m", prompt=DEMO_PROMPTS[i], max_tokens=16, temperature=0,
                                              extra_body={"return_routed_experts": True})
            assert out[i].choices[0].text == alone.choices[0].text
            got = base64.b64decode(out[i].choices[0].model_extra["sgl_ext"]["routed_experts"])
            assert got == base64.b64decode(alone.choices[0].model_extra["sgl_ext"]["routed_experts"])


def test_server_parallel_clients_start_in_arrival_order(fixture_models, tmp_path):
    """20 clients on 4 slots: the runs start in the order they were sent, every event of
    a run in order, each run's tokens numbered from its prompt on."""
    n = 20
    with ServerProcess("--model", fixture_models["deepseek2"], "--parallel", "4", "--n-ctx", "1024",
                       "--data-dir", tmp_path) as s:
        logs = [[] for _ in range(n)]
        sent = [threading.Event() for _ in range(n)]
        go = [threading.Event() for _ in range(n)]

        def client(i):
            with connect(s.ws_url, max_queue=None, open_timeout=30) as ws:
                ws.recv(timeout=30)
                go[i].wait(60)
                ws.send(json.dumps({"type": "generate", "text": f"client {i} says hello", "max_tokens": 30 + i % 5,
                                    "seed": i}))
                while True:
                    m = json.loads(ws.recv(timeout=120))
                    logs[i].append((time.perf_counter(), m))
                    sent[i].set() if m["type"] in ("queued", "start") else None
                    if m["type"] in ("done", "error"):
                        return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for i in range(n):
            go[i].set()
            assert sent[i].wait(60)
        for t in threads:
            t.join(300)
    starts = []
    for i, log in enumerate(logs):
        kinds = [m["type"] for _, m in log if m["type"] != "queued"]
        assert kinds == ["start", "prompt"] + ["token"] * (len(kinds) - 3) + ["done"], (i, kinds)
        msgs = [m for _, m in log]
        prompt = next(m for m in msgs if m["type"] == "prompt")
        idx = [m["index"] for m in msgs if m["type"] == "token"]
        assert idx == list(range(len(prompt["tokens"]), len(prompt["tokens"]) + len(idx)))
        starts.append(next(t for t, m in log if m["type"] == "start"))
    # the clients' threads see simultaneous starts (one admission round) a few ms apart in
    # any order; a run that jumped the queue would start a whole run (30+ tokens) early
    jumped = [(i, j) for i in range(n) for j in range(i + 1, n) if starts[j] < starts[i] - 0.02]
    assert not jumped, jumped


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [1, 2])
def test_the_worker_loop_ends_running_runs_with_done_when_stopped(fixture_models, tmp_path, parallel):
    """One worker loop for one slot and for several: stopping the server ends every running
    run as a cancelled one ends (`done`, reason cancelled, the tokens so far in its
    permalink), and the next job in the queue never starts."""
    from moeviz.server.requests import GenerateRequest
    from moeviz.server.worker import GenerationWorker, Job
    from moeviz.trace.store import RunStore

    engine = Engine(fixture_models["llama"], n_ctx=2048 * parallel, parallel=parallel)
    worker = GenerationWorker(engine, 200, RunStore(tmp_path))
    logs = [[] for _ in range(parallel + 1)]
    stopper = []

    def sender(i):
        def send(text, _t):
            m = json.loads(text)
            logs[i].append(m)
            if m["type"] == "token" and m["index"] == 10 and not stopper:   # every running run is generating
                t = threading.Thread(target=worker.stop)
                t.start()
                stopper.append(t)
        return send

    try:
        for i in range(parallel + 1):
            request = GenerateRequest(f"run {i}", None, SamplingSettings(max_tokens=2000, temperature=0.0), False)
            worker.submit(Job(request, sender(i)))
        deadline = time.time() + 120
        while not stopper and time.time() < deadline:
            time.sleep(0.05)
        stopper[0].join(60)
    finally:
        engine.close()
    for log in logs[:parallel]:
        kinds = [m["type"] for m in log if m["type"] != "queued"]
        assert kinds[:2] == ["start", "prompt"] and kinds[-1] == "done", kinds[-3:]
        assert log[-1]["finish"]["reason"] == "cancelled" and 0 < log[-1]["finish"]["n_generated"] < 2000
        assert log[-1]["permalink"].startswith("/r/")
    assert {m["type"] for m in logs[parallel]} == {"queued"}   # told its place, never started


@pytest.mark.slow
def test_a_group_of_jobs_starts_together_when_as_many_slots_are_free(fixture_models, tmp_path):
    """GenerationWorker.submit_group (a request's `n` choices): the jobs start together,
    each its own slot equal to the same run alone, once as many slots are free; a job
    sent after the group does not take the one free slot before it."""
    from moeviz.server.requests import GenerateRequest
    from moeviz.server.worker import GenerationWorker, Job
    from moeviz.trace.store import RunStore

    path = fixture_models["llama"]
    engine = Engine(path, n_ctx=1024, parallel=2, **EXACT)
    worker = GenerationWorker(engine, 200, RunStore(tmp_path))
    logs: dict[str, list] = {}
    first_token = threading.Event()

    def job(name, prompt, settings):
        logs[name] = []

        def send(text, _t):
            m = json.loads(text)
            logs[name].append((time.perf_counter(), m))
            if name == "long" and m["type"] == "token":
                first_token.set()
        return Job(GenerateRequest(prompt, None, settings, False), send)

    choices = [SamplingSettings(max_tokens=8, temperature=0.9, seed=s) for s in (1, 2)]
    try:
        worker.submit(job("long", "a long one", SamplingSettings(max_tokens=150, temperature=0.0)))
        assert first_token.wait(60)
        worker.submit_group([job(f"choice{i}", "the same prompt", s) for i, s in enumerate(choices)])
        worker.submit(job("after", "after the group", SamplingSettings(max_tokens=4, temperature=0.0)))
        deadline = time.time() + 120
        while not all(log and log[-1][1]["type"] in ("done", "error") for log in logs.values()) \
                and time.time() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        engine.close()
    at = {name: {m["type"]: t for t, m in reversed(log)} for name, log in logs.items()}
    assert all(log[-1][1]["type"] == "done" for log in logs.values()), {k: v[-1] for k, v in logs.items()}
    assert min(at["choice0"]["start"], at["choice1"]["start"]) > at["long"]["done"]   # waited for 2 free slots
    assert at["choice0"]["token"] < at["choice1"]["done"] and at["choice1"]["token"] < at["choice0"]["done"]
    assert at["after"]["start"] > max(at["choice0"]["start"], at["choice1"]["start"])
    alone = Engine(path, n_ctx=512, **EXACT)
    try:
        for i, s in enumerate(choices):
            ref = [e.token.id for e in alone.generate("the same prompt", s) if isinstance(e, TokenRouted)]
            assert [m["token"]["id"] for _, m in logs[f"choice{i}"] if m["type"] == "token"] == ref
    finally:
        alone.close()
