"""The page's HTML, from web/'s Jinja templates: one renderer for the server (live and
replay pages, the not-found and loading pages) and for static export.

Modes (the page's `data-mode` and its config's `mode`):
    live    the server's page: generates over the websocket
    replay  a permalink (/r/<id>): the server's page over one stored run
    static  an exported site's index.html: reads manifest.json, served by any static host
"""
from __future__ import annotations

import functools
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import __version__
from .resources import web_dir as default_web_dir

PAGE_MODES = ("live", "replay", "static")


@functools.cache
def _environment(web_dir: Path) -> Environment:
    return Environment(loader=FileSystemLoader(str(web_dir)), autoescape=select_autoescape(["html"]))


def render_template(name: str, web_dir: str | Path | None = None, **context) -> str:
    """One of web/'s templates (web_dir: another folder of them, for tests)."""
    folder = Path(web_dir) if web_dir is not None else default_web_dir()
    return _environment(folder).get_template(name).render(modules=_modules(folder), **context)


@functools.cache
def _modules(web_dir: Path) -> tuple[str, ...]:
    """The page's ES modules but main.js, relative to web/: index.html names them all for
    preloading, so the browser fetches them at once rather than one import level at a
    time (a replay's first paint waits for them)."""
    js = web_dir / "js"
    return tuple(sorted(p.relative_to(web_dir).as_posix() for p in js.rglob("*.js") if p.name != "main.js")) \
        if js.is_dir() else ()


def static_url(mode: str) -> str:
    """Where the page's CSS and ES modules are: the server mounts them at /static/; a static
    site's address is unknown, so there they are named relative to the page."""
    return "static/" if mode == "static" else "/static/"


def render_page(mode: str, *, model: dict, capture: str, public: bool, run_id: str | None = None,
                run_title: str | None = None, description: str | None = None, preview_url: str | None = None,
                preload: list[str] | tuple[str, ...] = (), web_dir: str | Path | None = None) -> str:
    """index.html for `mode`. run_title, description and preview_url (the Open Graph image)
    name one run (a permalink, an exported site); without them the page uses its own.
    preload: what the page will fetch first (a replay's trace), fetched while its
    modules load."""
    if mode not in PAGE_MODES:
        raise ValueError(f"page mode must be one of {', '.join(PAGE_MODES)}, not {mode!r}")
    # absent, not None: the template's `default` filter fills in an absent value only
    named = {k: v for k, v in (("run_title", run_title), ("description", description), ("preview_url", preview_url))
             if v is not None}
    return render_template("index.html", web_dir, model=model, capture=capture, public=public, mode=mode,
                           run_id=run_id, static_url=static_url(mode), version=__version__, preload=list(preload),
                           **named)


def render_not_found(run_id: str, web_dir: str | Path | None = None) -> str:
    """The page a person gets for a permalink to no run: with a way back."""
    return render_template("notfound.html", web_dir, run_id=run_id[:80], static_url=static_url("live"))
