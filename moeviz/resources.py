"""Where the page (web/) and the prompt library (prompts/) are.

Both folders live at the top of the repository and ship inside the wheel as the
packages `moeviz.web` and `moeviz.prompts_data` (setup.py maps them; their files are
package data, pyproject.toml). They are found through importlib.resources, so a wheel
installed anywhere and the editable install of a checkout (`pip install -e .`) find
them alike.
"""
from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

WEB_PACKAGE = "moeviz.web"
PROMPTS_PACKAGE = "moeviz.prompts_data"
_CHECKOUT = {WEB_PACKAGE: "web", PROMPTS_PACKAGE: "prompts"}   # their folders in the repository


def web_dir() -> Path:
    """The page's templates (index.html, notfound.html, loading.html), CSS and ES modules."""
    return _folder(WEB_PACKAGE)


def prompts_dir() -> Path:
    """The bundled prompt library (one JSON file per prompt)."""
    return _folder(PROMPTS_PACKAGE)


@functools.cache
def _folder(package: str) -> Path:
    try:
        folder = files(package)
    except ModuleNotFoundError:
        # a checkout run without installing it (PYTHONPATH=.), or an editable install
        # whose paths were made elsewhere: the folder at the top of the repository
        return Path(__file__).resolve().parents[1] / _CHECKOUT[package]
    if not isinstance(folder, Path):   # a zipped install: the server and export need real files
        raise RuntimeError(f"{package} is not a folder on disk ({folder!r}); install moeviz unzipped")
    return folder
