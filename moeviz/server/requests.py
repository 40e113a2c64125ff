"""Validating what a client asks for: one place, one-line errors."""
from __future__ import annotations

import dataclasses

from ..errors import UserError
from ..engine import SamplingSettings
from ..engine.text import validate_messages
from ..settings import ALIASES, SAMPLING, SETTINGS, from_message, with_defaults
from ..trace.jsontext import parse_json


class RequestError(UserError, ValueError):
    """A bad client message; the text is sent back as an `error` message."""


@dataclasses.dataclass
class GenerateRequest:
    prompt: str | list[dict]
    prompt_name: str | None
    settings: SamplingSettings
    probs: bool
    prompt_title: str | None = None       # a library prompt's title: what the run is called in the page
    prompt_domain: str | None = None
    experts_per_token: int | None = None  # None: the server's (serve --experts-per-token, else the model's)
    mask: list | str | None = None        # [[layer, expert], ...] ("*" for all) or "L:E,..."; None: the server's
    candidates: int = 0                   # top-N next tokens per position (0: none)


# every run setting (moeviz/settings.py) by its name or alias, plus the prompt and the routers' what-ifs
_KNOWN = {"type", "prompt_name", "text", "messages", "experts_per_token", "mask", *(s.name for s in SETTINGS), *ALIASES}
MAX_MASK_PAIRS = 100_000


def parse_message(raw: str | bytes, max_bytes: int) -> dict:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise RequestError(f"message is {size} bytes; the limit is {max_bytes}")
    msg = parse_json(raw, "message", RequestError)   # every way JSON fails (trace/jsontext.py)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise RequestError("message must be a JSON object with a string 'type'")
    return msg


def generate_request(msg: dict, prompts: dict, max_tokens_cap: int | None = None,
                     defaults: dict | None = None) -> GenerateRequest:
    """A `generate` message, checked. `max_tokens_cap`: a public server's limit (None:
    none; a run also ends where its context is full); `defaults`: serve's run-setting
    flags, for the settings the message leaves out."""
    unknown = sorted(set(msg) - _KNOWN)
    if unknown:
        raise RequestError(f"unknown field(s) in generate: {', '.join(unknown)}")
    given = [k for k in ("prompt_name", "text", "messages") if msg.get(k) is not None]
    if len(given) != 1:
        raise RequestError("generate needs exactly one of 'prompt_name', 'text' or 'messages'")
    name = msg.get("prompt_name")
    if name is not None:
        if not isinstance(name, str) or name not in prompts:
            raise RequestError(f"unknown prompt name {str(name)[:80]!r}")
        prompt = prompts[name].prompt
    elif msg.get("text") is not None:
        if not isinstance(msg["text"], str) or not msg["text"]:
            raise RequestError("'text' must be a non-empty string")
        prompt = msg["text"]
    else:
        prompt = validate_messages(msg["messages"])   # its PromptError is the client's one line
    given = with_defaults(from_message(msg), defaults)   # SettingsError names the field
    settings = SamplingSettings(**{s.name: given[s.name] for s in SAMPLING if s.name in given}).validate()
    if max_tokens_cap is not None and settings.max_tokens > max_tokens_cap:
        raise RequestError(f"max_tokens {settings.max_tokens} is over this server's limit of {max_tokens_cap}")
    probs = given.get("probs", False)
    lib = prompts[name] if name is not None else None
    k = msg.get("experts_per_token")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise RequestError("'experts_per_token' must be an integer or null")
    mask = msg.get("mask")
    if mask is not None and not isinstance(mask, (str, list)):
        raise RequestError("'mask' must be a list of [layer, expert] pairs or a string like \"3:5,*:0\"")
    if isinstance(mask, list) and len(mask) > MAX_MASK_PAIRS:
        raise RequestError(f"'mask' has {len(mask)} pairs; the limit is {MAX_MASK_PAIRS}")
    candidates = given.get("candidates", 0)
    # ranges (k up to n_expert, the mask's layers and experts, N up to the vocabulary) are
    # the model's: checked when the run starts (Recording), sent back as an error message
    return GenerateRequest(prompt, name, settings, probs, lib.title if lib else None, lib.domain if lib else None,
                           experts_per_token=k, mask=mask, candidates=candidates)
