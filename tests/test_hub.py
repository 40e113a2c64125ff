"""-hf REPO[:QUANT] / --hf-file: models by name through huggingface_hub, against a local
server answering as the hub does (tests/hubserver.py, reached through HF_ENDPOINT)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from hubserver import FakeHub
from moeviz import hub
from moeviz.fixtures import FixtureSpec, write_fixture

FILES = ["README.md", "tiny-moe-Q8_0.gguf", "tiny-moe-Q4_K_M.gguf", "tiny-moe-F16.gguf", "mmproj-tiny-F16.gguf"]


def test_choose_follows_llama_cpp_rule():
    assert hub.choose(FILES, None) == "tiny-moe-Q4_K_M.gguf"           # Q4_K_M first
    assert hub.choose(FILES, "Q8_0") == "tiny-moe-Q8_0.gguf"
    assert hub.choose(FILES, "f16") is None or hub.choose(FILES, "F16") == "tiny-moe-F16.gguf"
    assert hub.choose(FILES, "F16") == "tiny-moe-F16.gguf"              # never the projector
    assert hub.choose(["a-Q8_0.gguf", "b-Q5_K_S.gguf"], None) == "a-Q8_0.gguf"   # then Q8_0
    assert hub.choose(["b-IQ2_M.gguf", "a-Q5_K_S.gguf"], None) == "b-IQ2_M.gguf"  # then the first, in list order
    assert hub.choose(["x-Q4_K_M.gguf"], "Q6_K") is None                 # an asked tag never falls back
    # Q4_K_M must not match Q4_K_M_L's prefix only: "TAG[.-]"
    assert hub.choose(["m-Q4_K_M_XL.gguf", "m-Q4_K_M.gguf"], "Q4_K_M") == "m-Q4_K_M.gguf"
    split = ["Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf"]
    assert hub.choose(split, None) == "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf"
    assert hub.parts_of(split, "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf") == sorted(split)


@pytest.mark.parametrize("bad", ["nope", "a/b/c", "owner/repo:Q4 K", "/repo", "owner/"])
def test_bad_names_are_one_line(bad):
    with pytest.raises(hub.HubError) as e:
        hub.HubRef.parse(bad)
    assert "\n" not in str(e.value) and "OWNER/REPO" in str(e.value) or "tag" in str(e.value)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("hubmodels")
    a = write_fixture(d / "a.gguf", arch="qwen3moe")
    b = write_fixture(d / "b.gguf", FixtureSpec(arch="qwen2moe", n_expert=6, n_expert_used=2))
    return a, b


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    h = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield h
    h.close()


def moeviz(*args, env=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "moeviz", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_info_downloads_the_quant_asked_and_then_uses_the_cache(fake_hub, models):
    a, b = models
    fake_hub.add("test/tiny-moe-GGUF", {"README.md": b"# tiny", "tiny-moe-Q4_K_M.gguf": a, "tiny-moe-Q8_0.gguf": b})
    r = moeviz("info", "-hf", "test/tiny-moe-GGUF:q8_0", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["architecture"] == "qwen2moe" and info["n_expert"] == 6       # b, not a
    assert info["path"].endswith("tiny-moe-Q8_0.gguf") and str(fake_hub.url) not in info["path"]
    assert len(fake_hub.gets("/resolve/main/tiny-moe-Q8_0.gguf")) == 1
    assert not fake_hub.gets("tiny-moe-Q4_K_M.gguf")                          # only the file asked for
    # the default tag, then again: the second time nothing is downloaded
    for _ in range(2):
        r = moeviz("info", "-hf", "test/tiny-moe-GGUF", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["architecture"] == "qwen3moe"
    assert len(fake_hub.gets("/resolve/main/tiny-moe-Q4_K_M.gguf")) == 1
    # offline: the cache alone answers
    fake_hub.close()
    r = moeviz("info", "-hf", "test/tiny-moe-GGUF:Q8_0", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "qwen2moe" in r.stdout


def test_record_runs_a_hub_model_and_hf_file_picks_one_file(fake_hub, models, tmp_path):
    a, b = models
    fake_hub.add("test/pick", {"x-Q4_K_M.gguf": a, "sub/other.gguf": b})
    out = tmp_path / "run.json"
    r = moeviz("record", "-hf", "test/pick", "-hff", "sub/other.gguf", "--prompt", "hello", "--max-tokens", "3",
               "--temperature", "0", "-o", out)
    assert r.returncode == 0, r.stderr
    trace = json.loads(out.read_text())
    assert trace["model"]["architecture"] == "qwen2moe"
    assert len(trace["tokens"]) >= 3


def test_a_download_cut_half_way_resumes(fake_hub):
    # the demo model (23.5 MB): half of it is over huggingface_hub's 10 MiB write chunk, so
    # some bytes reach the disk before the connection breaks
    from moeviz.demo import SHIPPED as a

    fake_hub.add("test/flaky", {"m-Q4_K_M.gguf": a}, cut_once={"m-Q4_K_M.gguf"})
    r = moeviz("info", "-hf", "test/flaky", "--json")
    assert r.returncode == 0, r.stderr
    gets = fake_hub.gets("/resolve/main/m-Q4_K_M.gguf")
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2].startswith("bytes=")
    assert int(gets[1][2].split("=")[1].split("-")[0]) > 0                      # asked for the rest only
    assert json.loads(r.stdout)["file_size"] == a.stat().st_size


def test_gated_repos_need_hf_token(fake_hub, models):
    a, _ = models
    fake_hub.add("test/gated", {"m-Q4_K_M.gguf": a}, token="hf_secret")
    r = moeviz("info", "-hf", "test/gated")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "gated" in r.stderr and "HF_TOKEN" in r.stderr
    r = moeviz("info", "-hf", "test/gated", "--json", env={"HF_TOKEN": "hf_secret"})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args, words", [
    (["-hf", "test/none"], ["no model repository test/none"]),
    (["-hf", "test/tiny:Q6_K"], ["no GGUF file tagged Q6_K", "m-Q4_K_M.gguf"]),
    (["-hf", "test/tiny", "--hf-file", "missing.gguf"], ["has no file missing.gguf"]),
    (["--hf-file", "m-Q4_K_M.gguf"], ["--hf-file needs -hf"]),
    (["-hf", "nonsense"], ["OWNER/REPO"]),
])
def test_hub_errors_are_one_line(fake_hub, models, args, words):
    fake_hub.add("test/tiny", {"m-Q4_K_M.gguf": models[0]})
    r = moeviz("info", *args)
    assert r.returncode in (1, 2)
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for w in words:
        assert w in line


@pytest.mark.slow
def test_an_unreachable_hub_is_one_line(tmp_path):
    from serverproc import free_port

    r = moeviz("info", "-hf", "test/tiny", env={"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                               "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "\n" not in line and "cannot reach the hub" in line and "test/tiny" in line


def test_serve_takes_a_model_by_name(fake_hub, models):
    import urllib.request

    from serverproc import ServerProcess

    fake_hub.add("test/served", {"m-Q4_K_M.gguf": models[1]})
    with ServerProcess("-hf", "test/served") as s:
        model = json.load(urllib.request.urlopen(s.url + "/api/model", timeout=10))
    assert model["architecture"] == "qwen2moe" or model.get("model", {}).get("architecture") == "qwen2moe"


def split_gguf(src, out_prefix, max_tensors: int) -> list:
    """Rewrite a GGUF as llama.cpp's gguf-split does (NAME-0000i-of-0000N.gguf, split.* keys), with gguf-py."""
    import gguf

    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(f"{out_prefix}.gguf", str(r.fields["general.architecture"].contents()),
                        split_max_tensors=max_tensors)
    for name, f in r.fields.items():
        if not name.startswith("GGUF.") and name != "general.architecture":
            array = f.types[0] == gguf.GGUFValueType.ARRAY
            w.add_key_value(name, f.contents(), f.types[0], sub_type=f.types[-1] if array else None)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(out_prefix.parent.glob(out_prefix.name + "-*-of-*.gguf"))


@pytest.mark.slow
def test_a_split_model_is_downloaded_whole_and_read_as_one(fake_hub, models, tmp_path):
    a, _ = models
    parts = split_gguf(a, tmp_path / "m-Q4_K_M", max_tensors=12)
    assert len(parts) >= 3
    fake_hub.add("test/split", {f"Q4_K_M/{q.name}": q for q in parts} | {"m-Q8_0.gguf": a})
    r = moeviz("info", "-hf", "test/split", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    whole = json.loads(moeviz("info", a, "--json").stdout)
    for key in ("total_params", "active_params", "expert_params", "expert_bytes", "moe_layers", "n_expert"):
        assert info[key] == whole[key], key
    assert info["path"].endswith("Q4_K_M/m-Q4_K_M-00001-of-%05d.gguf" % len(parts))
    assert all(len(fake_hub.gets(f"/Q4_K_M/{q.name}")) == 1 for q in parts)   # every part, once
    # llama.cpp loads the parts from the first one: the same run as the unsplit file
    runs = []
    for model in (info["path"], a):
        out = tmp_path / f"run{len(runs)}.json"
        r = moeviz("record", "-m", model, "--prompt", "split me", "--max-tokens", "4", "--temperature", "0",
                   "--kv-type", "f32", "--flash-attn", "off", "-o", out)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(out.read_text()))
    assert runs[0]["tokens"] == runs[1]["tokens"]
    assert runs[0]["routing"]["expert_ids"] == runs[1]["routing"]["expert_ids"]
    # a later part, or a missing part: one line each
    r = moeviz("info", parts[1])
    assert r.returncode == 1 and "give its first part" in r.stderr
    parts[-1].unlink()
    r = moeviz("info", parts[0])
    assert r.returncode == 1 and f"part {len(parts)} of {len(parts)} is missing" in r.stderr
