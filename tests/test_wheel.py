"""The wheel stands alone: built from the working tree, installed with the patched
llama-cpp-python wheel into a fresh venv outside the repository, `moeviz serve` gives the
page, its CSS and ES modules and the prompt library, and `moeviz export` writes a site,
both run from a folder outside the repository with the package's own web/ and prompts/.

Slow: pip installs the dependencies from the package index into the new venv."""
import collections
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
from serverproc import free_port

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MOEVIZ_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moeviz")

pytestmark = pytest.mark.slow
Installed = collections.namedtuple("Installed", "venv src files wheel env cwd")


def source_files() -> list[str]:
    """What the repository holds now: tracked files and new ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file()})


def llama_wheel() -> Path:
    """The patched llama-cpp-python wheel this test run's own llama_cpp was installed from
    (patches/build-llama-cpp.sh caches it in $MOEVIZ_CACHE/wheels/<key>/)."""
    dist = importlib.metadata.distribution("llama_cpp_python")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    url = direct.get("url", "")
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
        want = direct.get("archive_info", {}).get("hashes", {}).get("sha256")
        if path.is_file() and (want is None or hashlib.sha256(path.read_bytes()).hexdigest() == want):
            return path
    # or a cached wheel holding the same libllama.so as the installed one
    lib = next((f"{e}" for e in dist.files or () if str(e).endswith("llama_cpp/lib/libllama.so")), None)
    record = {line.split(",")[0]: line.split(",")[1] for line in (dist.read_text("RECORD") or "").splitlines() if line}
    for wheel in sorted(CACHE.glob("wheels/*/llama_cpp_python-0.3.36-*.whl")):
        with zipfile.ZipFile(wheel) as z:
            name = next((n for n in z.namelist() if n.endswith(".dist-info/RECORD")), None)
            rows = dict(r.split(",")[:2] for r in z.read(name).decode().splitlines() if r) if name else {}
        if lib is not None and rows.get(lib) == record.get(lib):
            return wheel
    pytest.skip("the patched llama-cpp-python wheel is not in the cache (make setup builds it)")


def run(cmd, *, timeout, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def get(url: str, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("content-type", ""), r.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """moeviz's wheel and the patched llama-cpp-python in a fresh venv, plus an environment and
    a working folder that know nothing of the repository; `files`: the source files built."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert ROOT not in tmp.parents
    src = tmp / "src"   # a copy: the build never writes into the shared working tree (build/, *.egg-info)
    files = source_files()
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes((ROOT / f).read_bytes())
    llama = llama_wheel()
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-w", tmp / "dist", src], timeout=600)
    wheel = next((tmp / "dist").glob("moeviz-*.whl"))
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=300)
    run([venv / "bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, llama],
        timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MOEVIZ_DATA=str(tmp / "data"))
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return Installed(venv, src, files, wheel, env, cwd)


def test_the_wheel_holds_the_page_and_the_prompts(installed):
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
    shipped = {f"moeviz/web/{f[len('web/'):]}" for f in installed.files if f.startswith("web/")}
    shipped |= {f"moeviz/prompts_data/{f[len('prompts/'):]}" for f in installed.files if f.startswith("prompts/")}
    assert "moeviz/web/index.html" in shipped and "moeviz/web/js/main.js" in shipped
    assert shipped - names == set()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_installed_package_finds_its_own_files(installed):
    venv, env, cwd = installed.venv, installed.env, installed.cwd
    r = run([venv / "bin/python", "-c", "import moeviz, moeviz.resources as r; "
             "print(moeviz.__file__); print(r.web_dir()); print(r.prompts_dir())"], timeout=60, env=env, cwd=cwd)
    site = (venv / "lib").resolve()
    for line in r.stdout.split():
        assert site in Path(line).resolve().parents, r.stdout


def test_serve_from_the_wheel(installed, tmp_path):
    venv, src, env, cwd = installed.venv, installed.src, installed.env, installed.cwd
    port = free_port()
    proc = subprocess.Popen([venv / "bin/moeviz", "serve", "--port", str(port), "--data-dir", tmp_path / "runs"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:   # /health answers 503 while the demo model loads, 200 once it is served
            assert proc.poll() is None, f"moeviz serve exited:\n{proc.stdout.read()}"
            try:
                if get(url + "/health", timeout=2)[0] == 200:
                    break
            except (OSError, urllib.error.HTTPError):
                pass
            assert time.time() < deadline, "moeviz serve did not come up"
            time.sleep(0.2)

        status, kind, body = get(url + "/")
        page = body.decode()
        assert status == 200 and kind.startswith("text/html")
        assert 'data-mode="live"' in page and 'src="/static/js/main.js"' in page and "moeviz-demo" in page

        # every file of web/ as the repository has it, under /static/
        for f in installed.files:
            if f.startswith("web/") and not f.endswith(".py"):
                status, _, body = get(f"{url}/static/{f[len('web/'):]}")
                assert status == 200 and body == (src / f).read_bytes(), f
        status, kind, _ = get(url + "/static/js/main.js")
        assert "javascript" in kind   # served as an ES module may be

        status, _, body = get(url + "/api/prompts")
        prompts = json.loads(body)
        assert status == 200 and prompts["model_kind"] == "demo"
        names = sorted(json.loads((src / f).read_text())["name"] for f in installed.files
                       if f.startswith("prompts/") and f.endswith(".json"))
        assert sorted(p["name"] for p in prompts["prompts"]) == names

        with pytest.raises(urllib.error.HTTPError) as e:   # the not-found page ships too
            get(url + "/r/no-such-run")
        assert e.value.code == 404 and "no-such-run" in e.value.read().decode()
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_export_from_the_wheel(installed, tmp_path):
    venv, src, env, cwd = installed.venv, installed.src, installed.env, installed.cwd
    site = tmp_path / "site"
    r = run([venv / "bin/moeviz", "export", "--out", site, "--max-tokens", 4], timeout=600, env=env, cwd=cwd)
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["format"] == "moeviz-site" and manifest["model"]["name"].startswith("moeviz-demo")
    assert f"wrote a static site with {len(manifest['runs'])} runs" in r.stderr and manifest["runs"]
    for entry in manifest["runs"]:
        assert (site / entry["file"]).is_file()
    page = (site / "index.html").read_text()
    assert 'data-mode="static"' in page and 'src="static/js/main.js"' in page
    assert (site / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for f in installed.files:
        if f.startswith("web/") and f.endswith((".js", ".css", ".svg")):
            assert (site / "static" / f[len("web/"):]).read_bytes() == (src / f).read_bytes(), f
    assert not list((site / "static").glob("*.html")) and not list((site / "static").rglob("*.py"))


def test_the_editable_install_finds_them_through_importlib_resources():
    """`pip install -e .` (make setup) maps the packages onto the repository's own folders."""
    # the installed one: a checkout's own moeviz.egg-info (a build's leftover) may come first
    urls = [json.loads(d.read_text("direct_url.json") or "{}") for d in importlib.metadata.distributions(name="moeviz")]
    if not any(u.get("dir_info", {}).get("editable") and Path(urllib.parse.urlparse(u["url"]).path) == ROOT
               for u in urls):
        pytest.skip("moeviz is not installed editable from this checkout")
    assert Path(str(importlib.resources.files("moeviz.web"))) == ROOT / "web"
    assert Path(str(importlib.resources.files("moeviz.prompts_data"))) == ROOT / "prompts"
