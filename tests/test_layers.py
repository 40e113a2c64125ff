"""Imports run one way only: a layer may import the layers below it, never above
(docs/architecture.md). Every import in moeviz/ is read, including the ones inside
functions, and resolved to the top-level module or package it names."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "moeviz"

# bottom (0) to top; modules of one rank may import each other
LAYERS = [
    {"__init__", "errors", "settings", "files"},                   # settings: the run settings' one schema
    {"gguf_info", "gguf_archs", "gguf_header", "bpe", "gguf_write", "resources", "hub"},  # model files, package data
    {"llama"},                                            # ctypes, owning wrappers
    {"capture"},                                          # routing out of llama.cpp
    {"engine"},                                           # loading, generation loop
    {"trace"},                                            # the schema, files, messages
    {"analysis"},                                         # numpy (the LRU pass: numba)
    {"prompts", "preview", "record", "demo", "demo_model", "fixtures", "page", "prune", "prune_cli"},
    {"export"},
    {"server"},
    {"cli", "__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def top_level(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported(path: Path):
    """(line, top-level moeviz module) for every moeviz import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    pkg_parts = ["moeviz", *path.relative_to(PKG).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".") if node.module else []
            if target[:1] != ["moeviz"]:
                continue
            if len(target) == 1:   # `from moeviz import x` / `from . import x` at the top
                for alias in node.names:
                    yield node.lineno, alias.name
            else:
                yield node.lineno, target[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "moeviz" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_every_module_has_a_layer():
    names = {top_level(p) for p in PKG.rglob("*.py")}
    assert names - set(RANK) == set(), "modules missing from LAYERS (and docs/architecture.md)"


def test_no_import_runs_upward():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        here = top_level(path)
        for line, name in imported(path):
            if name in RANK and RANK[name] > RANK[here]:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} ({here}) imports {name}")
    assert upward == []


def test_shipped_code_never_imports_the_test_fixtures():
    users = [f"{p.relative_to(PKG.parent)}:{line}" for p in PKG.rglob("*.py") if top_level(p) != "fixtures"
             for line, name in imported(p) if name == "fixtures"]
    assert users == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The walker resolves relative imports: a planted upward one is found."""
    bad = PKG / "llama" / "zz_upward_probe.py"
    bad.write_text("from ..server import app\n")
    try:
        found = [name for _, name in imported(bad)]
    finally:
        bad.unlink()
    assert found == ["server"] and RANK["server"] > RANK["llama"]
