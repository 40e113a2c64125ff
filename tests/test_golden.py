"""The golden figures the page's JS is held to (tests/js/, `node --test tests/js`) are
what moeviz.analysis, moeviz.trace and moeviz/preview.py give today: a change to a
figure, a trace check or the heatmap colours fails here until tests/write_golden.py
writes them again, and then in node until the page agrees."""
import json
import re

import write_golden


def _verdicts(data: bytes) -> list:
    """trace-checks.json as node reads it: each case's bytes, refused or not, and the field
    its message names (a message's other words may change without touching the page)."""
    def field(msg):
        m = re.match(r"[a-z_]+(\.[a-z_0-9]+|\[\d+\])+", msg or "")
        return re.sub(r"\[\d+\]", "", m.group(0)) if m else None
    return [(c["case"], c["bytes"], c["error"] is None, field(c["error"])) for c in json.loads(data)]


def test_committed_goldens_are_what_python_gives_now():
    stale = []
    for rel, data in write_golden.write_all().items():
        path = write_golden.GOLDEN / rel
        if not path.is_file():
            stale.append(rel)
        elif rel == "trace-checks.json":
            if _verdicts(path.read_bytes()) != _verdicts(data):
                stale.append(rel)
        elif path.read_bytes() != data:
            stale.append(rel)
    assert stale == [], f"run `python tests/write_golden.py`: stale goldens {stale}"


def test_goldens_cover_the_shapes_the_page_meets():
    """Real recorded runs: the demo model, a dense layer with shared experts, a what-if
    top-k with a mask and candidates; traces with and without router probabilities."""
    from moeviz.trace import load

    traces = {name: load(write_golden.GOLDEN / "traces" / name) for name in write_golden.TRACES}
    assert traces["demo-probs.moetrace"].model["n_expert"] == 64
    ds = traces["deepseek2-plain.json"]
    assert ds.model["dense_layers"] and ds.model["n_shared_experts"] and ds.probs is None
    what_if = traces["gpt-oss-whatif.moetrace"]
    assert what_if.k != what_if.model["n_expert_used"] and what_if.mask and what_if.candidate_ids is not None
    for name, t in traces.items():
        assert t.n_tokens - t.n_prompt >= 8, name    # a cursor 3 tokens into the generated ones is inside the run
        cases = json.loads((write_golden.GOLDEN / f"{name}.figures.json").read_text())["cases"]
        assert {c["tokens"] for c in cases} >= {"all", "generated"} and len({c["applied"] for c in cases}) == 2
