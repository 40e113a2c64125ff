"""patches/build-llama-cpp.sh refuses a patch that does not apply, with a clear message."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDIST = Path(os.environ.get("MOEVIZ_CACHE", Path.home() / ".cache/moeviz")) / "sdist/llama_cpp_python-0.3.36.tar.gz"


@pytest.mark.skipif(not SDIST.exists(), reason="needs the cached sdist that make setup downloads")
@pytest.mark.slow
def test_a_patch_that_does_not_apply_stops_the_build(tmp_path):
    patches = tmp_path / "patches"
    patches.mkdir()
    shutil.copy(ROOT / "patches/build-llama-cpp.sh", patches)
    (patches / "0099-bad.patch").write_text(
        "--- a/vendor/llama.cpp/include/llama.h\n+++ b/vendor/llama.cpp/include/llama.h\n"
        "@@ -1,3 +1,3 @@\n-this line is not in llama.h\n+neither is this\n context\n")
    cache = tmp_path / "cache"
    (cache / "sdist").mkdir(parents=True)
    os.symlink(SDIST, cache / "sdist" / SDIST.name)
    r = subprocess.run(["bash", str(patches / "build-llama-cpp.sh"), sys.executable], capture_output=True, text=True,
                       env={**os.environ, "MOEVIZ_CACHE": str(cache)}, timeout=300)
    assert r.returncode != 0
    assert "moeviz: patch 0099-bad.patch does not apply to llama-cpp-python 0.3.36" in r.stderr
    assert not list((cache / "wheels").glob("*/*.whl"))
