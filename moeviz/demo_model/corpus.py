"""The training text: the Python standard library's own sources and documentation.

Every Python install has it offline. Code is `Lib/**/*.py` (without the test suites
and the generated codec tables); prose is the reference documentation that pydoc ships
(`pydoc_data/topics.py`), IDLE's text and HTML help, the licence, and the longer
docstrings of the code files. Paths are walked in sorted order and the held-out split
is chosen by a hash of each document's name, so the corpus is the same on every run
(for one Python version).
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import html.parser
import re
import sys
from pathlib import Path

# Directories left out of the code corpus: test suites (huge, repetitive, odd data),
# generated codec tables, and what is not the standard library.
EXCLUDE_DIRS = {"test", "tests", "idle_test", "encodings", "site-packages", "dist-packages", "__pycache__",
                "pydoc_data", "ensurepip", "__phello__"}
HELD_OUT_EVERY = 20          # about 1 document in 20 is held out
MIN_DOCSTRING = 200          # docstrings at least this long become prose documents too


@dataclasses.dataclass(frozen=True)
class Document:
    name: str       # stable identifier, e.g. "code:json/decoder.py" or "prose:topics/assert"
    kind: str       # "code" | "prose"
    text: str

    @property
    def held_out(self) -> bool:
        return is_held_out(self.name)


def is_held_out(name: str) -> bool:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") % HELD_OUT_EVERY == 0


def stdlib_dir() -> Path:
    """The standard library's source folder of the running interpreter (not the venv's)."""
    return Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def code_files(lib: Path) -> list[Path]:
    out = []
    for p in sorted(lib.rglob("*.py")):
        rel = p.relative_to(lib)
        if any(part in EXCLUDE_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        out.append(p)
    return out


def _read(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def docstrings(source: str) -> list[str]:
    """Module, class and function docstrings of a source file, cleaned with inspect's rules."""
    import inspect  # noqa: PLC0415

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and len(doc) >= MIN_DOCSTRING:
                out.append(inspect.cleandoc(doc))
    # the same docstring can appear twice (copied methods): keep the first
    seen, unique = set(), []
    for d in out:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


class _HTMLText(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "dt", "dd", "pre", "section", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(source: str) -> str:
    p = _HTMLText()
    p.feed(source)
    text = "".join(p.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def documents(lib: Path | None = None) -> list[Document]:
    """All documents, code first then prose, each list in a fixed order."""
    lib = lib or stdlib_dir()
    docs: list[Document] = []
    prose: list[Document] = []
    for p in code_files(lib):
        src = _read(p)
        if not src or not src.strip():
            continue
        rel = p.relative_to(lib).as_posix()
        docs.append(Document(f"code:{rel}", "code", src))
        # Docstrings of a held-out file stay held out (prose documents named after it).
        for i, d in enumerate(docstrings(src)):
            prose.append(Document(f"prose:doc/{rel}#{i}", "prose", d) if not is_held_out(f"code:{rel}")
                         else Document(f"prose:doc/{rel}#{i}@held", "prose", d))
    topics_py = lib / "pydoc_data" / "topics.py"
    if topics_py.exists():
        ns: dict = {}
        exec(compile(topics_py.read_text(encoding="utf-8"), str(topics_py), "exec"), ns)  # a literal dict
        for key in sorted(ns["topics"]):
            prose.append(Document(f"prose:topics/{key}", "prose", ns["topics"][key].strip()))
    for rel in ["LICENSE.txt", *sorted(p.relative_to(lib).as_posix() for p in (lib / "idlelib").glob("*.txt"))]:
        t = _read(lib / rel)
        if t:
            prose.append(Document(f"prose:{rel}", "prose", t.strip()))
    help_html = lib / "idlelib" / "help.html"
    if help_html.exists():
        prose.append(Document("prose:idlelib/help.html", "prose", html_text(help_html.read_text(encoding="utf-8"))))
    return docs + prose


def split(docs: list[Document]) -> tuple[list[Document], list[Document]]:
    """(train, held_out). A held-out code file's docstrings are held out with it."""
    train, held = [], []
    for d in docs:
        held_doc = d.held_out or d.name.endswith("@held")
        (held if held_doc else train).append(d)
    return train, held


def load_document(name: str, lib: Path | None = None) -> str:
    """The text of one code file or pydoc topic by its Document name, without reading the
    whole corpus (for tests): "code:<path under Lib>" or "prose:topics/<key>"."""
    lib = lib or stdlib_dir()
    if name.startswith("code:"):
        return (lib / name[len("code:"):]).read_text(encoding="utf-8")
    if name.startswith("prose:topics/"):
        ns: dict = {}
        topics_py = lib / "pydoc_data" / "topics.py"
        exec(compile(topics_py.read_text(encoding="utf-8"), str(topics_py), "exec"), ns)
        return ns["topics"][name[len("prose:topics/"):]].strip()
    raise ValueError(f"cannot load {name!r} on its own")
