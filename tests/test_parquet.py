"""`moeviz export --parquet`: the routing of recorded runs as one long table, read back
with pyarrow and queried with DuckDB (the README's query) to the same figures as
`moeviz stats`."""
import json

import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, llama_fixture):
    folder = tmp_path_factory.mktemp("parquet")
    paths = []
    for i, prompt in enumerate(["the cat sat on the mat", "a dog ran in the park and"]):
        out = folder / f"run{i}.moetrace"
        run_cli("record", "--model", llama_fixture, "--prompt", prompt, "--max-tokens", 10, "--seed", i, "--out", out,
                check=True)
        paths.append(out)
    return paths


@pytest.mark.slow
def test_long_table_round_trip_and_duckdb_reproduces_stats(recorded, tmp_path):
    import duckdb
    import pyarrow.parquet as pq

    from moeviz.trace import load

    out = tmp_path / "routing.parquet"
    r = run_cli("export", *recorded, "--parquet", out, check=True)
    assert "routing rows" in r.stderr and not list(tmp_path.glob("*.tmp"))
    table = pq.read_table(out)
    assert table.column_names == ["run", "token_index", "token_id", "token", "prompt", "layer", "slot", "expert",
                                  "weight"]
    traces = [load(p) for p in recorded]
    assert table.num_rows == sum(t.expert_ids.size for t in traces)
    rows = table.to_pydict()
    # every row back in its trace: run 1, token 3, MoE layer 2, slot 1
    t = traces[1]
    n0 = traces[0].expert_ids.size
    L, k = t.expert_ids.shape[1:]
    i = n0 + (3 * L + 2) * k + 1
    assert rows["run"][i] == "run1" and rows["token_index"][i] == 3 and rows["token_id"][i] == t.tokens[3]["id"]
    assert rows["token"][i] == t.tokens[3]["text"] and rows["prompt"][i] == t.tokens[3]["prompt"]
    assert rows["layer"][i] == t.model["moe_layers"][2] and rows["slot"][i] == 1
    assert rows["expert"][i] == t.expert_ids[3, 2, 1] and rows["weight"][i] == pytest.approx(t.weights[3, 2, 1])

    # The README's DuckDB query: dormant experts per MoE layer of one run, as `moeviz stats` counts them.
    stats = json.loads(run_cli("stats", recorded[0], "--json", "--no-cache-sim", check=True).stdout)["traces"][0]
    E = traces[0].model["n_expert"]
    query = f"""
        SELECT layer, {E} - count(DISTINCT expert) AS dormant
        FROM '{out}' WHERE run = 'run0' GROUP BY layer ORDER BY layer"""
    dormant = duckdb.sql(query).fetchall()
    assert [d for _, d in dormant] == stats["dormant"]["count"]
    # and the selection counts per (layer, expert) of the generated tokens only
    counts = duckdb.sql(f"""SELECT layer, expert, count(*) FROM '{out}' WHERE run = 'run0' AND NOT prompt
                            GROUP BY ALL ORDER BY ALL""").fetchall()
    gen = json.loads(run_cli("stats", recorded[0], "--json", "--no-cache-sim", "--tokens", "generated",
                             check=True).stdout)["traces"][0]["utilization"]["counts"]
    layers = traces[0].model["moe_layers"]
    table_counts = np.zeros((len(layers), E), int)
    for layer, expert, c in counts:
        table_counts[layers.index(layer), expert] = c
    assert table_counts.tolist() == gen


def test_export_needs_a_destination(recorded):
    r = run_cli("export", recorded[0])
    assert r.returncode != 0 and "--out" in r.stderr and "--parquet" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
