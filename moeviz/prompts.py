"""The prompt library: one JSON file per prompt in prompts/ (name, title, domain, text or
messages, and optionally `models`: the kinds of model it suits).

Kinds: "demo" is moeviz's own demo model (moeviz-demo-*: 6M parameters, trained on
Python code and Python's docs only, so a story or translation prompt gets gibberish),
"general" any other model. A prompt without `models` suits both.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import UserError
from .resources import prompts_dir

DEFAULT_DIR = prompts_dir()   # the bundled library (prompts/ in the repository)
MODEL_KINDS = ("demo", "general")


def model_kind(model_name: str) -> str:
    """The kind of a model, by its GGUF name: moeviz's demo models are named moeviz-demo-*."""
    return "demo" if str(model_name).startswith("moeviz-demo") else "general"


def suits(prompt: "LibraryPrompt", kind: str) -> bool:
    return kind in prompt.models


def suited(prompts, kind: str) -> list:
    """The prompts that suit a kind of model, in library order; all of them when none does."""
    out = [p for p in prompts if suits(p, kind)]
    return out or list(prompts)


class PromptLibraryError(UserError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class LibraryPrompt:
    name: str
    title: str
    domain: str
    text: str | None = None
    messages: tuple | None = None
    models: tuple = MODEL_KINDS

    @property
    def prompt(self):
        """What the engine takes: the text, or the chat messages."""
        return self.text if self.text is not None else [dict(m) for m in self.messages]

    def to_json(self) -> dict:
        d = {"name": self.name, "title": self.title, "domain": self.domain, "models": list(self.models)}
        if self.text is not None:
            d["text"] = self.text
        else:
            d["messages"] = [dict(m) for m in self.messages]
        return d


def load_prompts(directory: str | Path = DEFAULT_DIR) -> dict[str, LibraryPrompt]:
    directory = Path(directory)
    if not directory.is_dir():
        raise PromptLibraryError(f"prompt folder not found: {directory}")
    out: dict[str, LibraryPrompt] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PromptLibraryError(f"prompt file {path.name} is not valid JSON: {e}") from None
        name = d.get("name") if isinstance(d, dict) else None
        if not isinstance(name, str) or not name:
            raise PromptLibraryError(f"prompt file {path.name} needs a string 'name'")
        text, messages = d.get("text"), d.get("messages")
        if (text is None) == (messages is None):
            raise PromptLibraryError(f"prompt file {path.name} needs exactly one of 'text' or 'messages'")
        if messages is not None and not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise PromptLibraryError(f"prompt file {path.name}: 'messages' must be a list of {{role, content}}")
        models = d.get("models", list(MODEL_KINDS))
        if not (isinstance(models, list) and models and all(m in MODEL_KINDS for m in models)):
            raise PromptLibraryError(f"prompt file {path.name}: 'models' must be a list of {', '.join(MODEL_KINDS)}")
        if name in out:
            raise PromptLibraryError(f"prompt name {name!r} is used twice (second in {path.name})")
        out[name] = LibraryPrompt(name=name, title=str(d.get("title", name)), domain=str(d.get("domain", "")),
                                  text=text, messages=tuple({"role": m["role"], "content": m["content"]} for m in messages)
                                  if messages is not None else None, models=tuple(models))
    return out
