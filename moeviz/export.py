"""Static demo sites: the page in replay mode plus traces and a manifest.

The result is plain files — any static host serves it (GitHub Pages, S3, `python -m
http.server`); no Python runs there. Layout:
    index.html            the page (static mode: reads manifest.json), with a title, a
                          description and Open Graph tags for link previews
    preview.png           the first run's heatmap, 1200 x 630 (the page's og:image)
    static/...            the page's CSS and ES modules, copied from web/
    manifest.json         {"format": "moeviz-site", "version": 1, "model": ..., "runs": [...]}
    runs/<name>.moetrace  one trace per run (trace format v1, binary form: the page
                          loads its arrays as they are; older sites' runs/<name>.json
                          open too)
    runs/<name>.head.moetrace  for a run longer than trace.partial.HEAD_TOKENS: its
                          first tokens (the manifest's "head"), which the page draws
                          while the whole trace arrives
Written into a temporary folder next to the target, then moved into place, so an
interrupted export never leaves a half-written site.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import UserError
from .page import render_page
from .preview import render_png, run_description, run_title
from .resources import web_dir as default_web_dir
from .trace import Trace
from .trace.io import dumps
from .trace.partial import binary_head

SITE_FORMAT = "moeviz-site"


class ExportError(UserError, ValueError):
    pass


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower()
    return s[:60] or "run"


def run_entry(name: str, trace: Trace, file: str) -> dict:
    # the title is what the page calls the run, in its picker and its compare list alike
    return {"name": name, "file": file, "title": trace.settings.get("prompt_title") or name,
            "domain": trace.settings.get("prompt_domain", ""), "n_tokens": trace.n_tokens,
            "n_prompt": trace.n_prompt, "model": trace.model["name"]}


def export_site(out: str | os.PathLike, runs: list[tuple[str, Trace]], web_dir: Path | None = None) -> Path:
    """Write a static site for `runs` ((name, trace) pairs) to `out` (replaced if present);
    web_dir: the page's folder (default: the installed web/)."""
    web_dir = Path(web_dir) if web_dir is not None else default_web_dir()
    if not runs:
        raise ExportError("nothing to export: no traces given")
    models = {json.dumps(t.model, sort_keys=True) for _, t in runs}
    out = Path(out).resolve()
    if out.exists() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not a moeviz site; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        # the server's page templates (web/*.html: the page, loading, not found, key needed)
        # are rendered, never served as they are: a site gets only its own index.html
        shutil.copytree(web_dir, tmp / "static", ignore=shutil.ignore_patterns("*.html", "*.py", "__pycache__"))
        (tmp / "runs").mkdir()
        entries, used = [], set()
        for name, trace in runs:
            base = slug(name)
            file, i = f"runs/{base}.moetrace", 2
            while file in used:
                file, i = f"runs/{base}-{i}.moetrace", i + 1
            used.add(file)
            data = dumps(trace.validate(), binary=True)
            (tmp / file).write_bytes(data)
            entries.append(run_entry(name, trace, file))
            head = binary_head(data)
            if head is not None:
                entries[-1]["head"] = file[: -len(".moetrace")] + ".head.moetrace"
                (tmp / entries[-1]["head"]).write_bytes(head)
        first = runs[0][1].model
        manifest = {"format": SITE_FORMAT, "version": 1, "model": first if len(models) == 1 else None,
                    "runs": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "preview.png").write_bytes(render_png(runs[0][1]))
        title = run_title(runs[0][1]) if len(runs) == 1 else f"{len(runs)} recorded runs of {first['name']}"
        description = run_description(runs[0][1]) if len(runs) == 1 else (
            f"{len(runs)} recorded runs of {first['name']}, starting with {run_title(runs[0][1])}: "
            "watch each token's routing through the experts, layer by layer, and compare the runs.")
        # a static host's address is unknown here: the preview is named relative to the page
        # the page fetches the manifest, then the first run (its head when it has one): both
        # preloaded, so they arrive while its modules load
        html = render_page("static", model=first, capture=runs[0][1].settings.get("capture", ""), public=True,
                           run_title=title, description=description, preview_url="preview.png",
                           preload=["manifest.json", entries[0].get("head") or entries[0]["file"]], web_dir=web_dir)
        (tmp / "index.html").write_text(html, encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
