"""The built-in default model used when no --model is given.

Until the trained demo model ships (moeviz/data/demo-moe.gguf), the default is a
generated fixture written once to the cache folder.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

SHIPPED = Path(__file__).parent / "data" / "demo-moe.gguf"


def cache_dir() -> Path:
    base = os.environ.get("MOEVIZ_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moeviz")
    return Path(base)


def default_model_path() -> Path:
    if SHIPPED.exists():
        return SHIPPED
    from .fixtures import FixtureSpec, write_fixture  # noqa: PLC0415

    spec = FixtureSpec(arch="llama", n_layer=8, n_embd=128, n_head=4, n_head_kv=2, n_ff=128, n_expert=16,
                       n_expert_used=2, seed=1)
    # str hashes change per process; name the file by a stable digest of the spec
    digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:12]
    path = cache_dir() / f"fixture-demo-{digest}.gguf"
    if not path.exists():
        write_fixture(path, spec)
    return path
