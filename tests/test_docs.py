"""docs/architecture.md and README's Layout table describe the tree as it is: every path
they name exists, every module of moeviz/ is named in the architecture's layer table,
and the Layout table lists every package and top-level folder."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "moeviz"
ARCH = (ROOT / "docs" / "architecture.md").read_text()
# packages described as a whole (their modules need not be named one by one)
WHOLE = {"toolcalls", "demo_model", "fixtures"}
PATHLIKE = re.compile(r"`([\w./<>-]+(?:\.(?:py|md|js|json|sh|patch|html)|/))`")


def named_paths(text: str) -> set[str]:
    return {m for m in PATHLIKE.findall(text) if "<" not in m}


def resolves(name: str) -> bool:
    """A path from the repository root or from moeviz/ (or one of its packages), or a bare
    file name found somewhere in the tree."""
    name = name.rstrip("/")
    if "/" in name:
        bases = [ROOT, PKG, *[p for p in PKG.iterdir() if p.is_dir()]]
        return any((b / name).exists() for b in bases)
    return any(True for _ in ROOT.glob(f"**/{name}") if ".venv" not in _.parts)


def test_every_path_the_architecture_names_exists():
    missing = sorted(p for p in named_paths(ARCH) if not resolves(p))
    assert missing == []


def test_every_module_is_in_the_layer_table():
    table = ARCH.split("## Errors")[0]
    names = set(re.findall(r"`([\w./-]+)`", table))
    flat = {n.split("/")[-1] if not n.endswith("/") else n.rstrip("/").split("/")[-1] + "/" for n in names}
    missing = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if path.stem in ("__init__", "__main__") or any(part in WHOLE for part in rel.parts[:-1]):
            continue
        if path.name not in flat and rel.as_posix() not in names:
            missing.append(rel.as_posix())
    for pkg in sorted(p for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        if f"{pkg.name}/" not in flat and f"moeviz/{pkg.name}/" not in names:
            missing.append(f"{pkg.name}/")
    assert missing == [], "name them in docs/architecture.md's layer table"


def test_readme_layout_lists_every_package_and_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"^\| `([^`]+)` \|", layout, re.M))
    assert all((ROOT / p.rstrip("/")).exists() for p in paths), sorted(p for p in paths if not (ROOT / p).exists())
    wanted = {f"moeviz/{p.name}/" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    wanted |= {f"{p.name}/" for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in ("moeviz", "moeviz.egg-info", "site") and not p.name.endswith(".egg-info")}
    assert wanted - paths == set(), "README's Layout table misses these"
