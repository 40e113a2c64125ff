"""What a generation produces, in order: one PromptRouted, TokenRouted per token, Finished.

These are the engine's plain-Python events; `moeviz.trace` turns them into the one
documented schema that trace files, the websocket and static exports share.
"""
from __future__ import annotations

import dataclasses

from ..capture.routing import BatchRouting


@dataclasses.dataclass
class TokenInfo:
    id: int
    text: str        # text this token adds to the output (UTF-8 safe, may be "")
    prompt: bool     # True for prompt tokens, False for generated ones


@dataclasses.dataclass
class PromptRouted:
    tokens: list[TokenInfo]
    routing: BatchRouting          # one row per prompt token, in order
    prefill_seconds: float


@dataclasses.dataclass
class TokenRouted:
    index: int                     # position in the whole sequence (prompt tokens first)
    token: TokenInfo
    routing: BatchRouting          # one row: the routing of this token's own hidden state
    decode_seconds: float


@dataclasses.dataclass
class Finished:
    reason: str                    # "eos" | "length" | "stop" | "context" | "cancelled"
    n_prompt: int
    n_generated: int
    prefill_seconds: float
    decode_seconds: float
