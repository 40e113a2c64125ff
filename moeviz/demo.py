"""The built-in default model used when no --model is given: the trained demo model
that ships inside the package (moeviz/data/demo-moe.gguf, docs/demo-model.md)."""
from __future__ import annotations

from pathlib import Path

from .errors import UserError

SHIPPED = Path(__file__).parent / "data" / "demo-moe.gguf"



def default_model_path() -> Path:
    if not SHIPPED.exists():
        raise UserError("the built-in demo model is missing from this installation; give --model MODEL.gguf")
    return SHIPPED
