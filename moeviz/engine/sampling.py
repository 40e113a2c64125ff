"""Sampling settings, validated, and the llama.cpp sampler chain they make."""
from __future__ import annotations

import dataclasses

from ..errors import UserError
from ..llama.sampler import SamplerChain


class SettingsError(UserError, ValueError):
    """A generation setting is out of range."""


@dataclasses.dataclass
class SamplingSettings:
    max_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    seed: int = 0
    stop: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> "SamplingSettings":
        for name in ("temperature", "top_p"):   # a JSON integer of 400 digits is no float
            try:
                float(getattr(self, name))
            except (OverflowError, TypeError, ValueError):
                raise SettingsError(f"{name} must be a number, got {str(getattr(self, name))[:40]}") from None
        if not isinstance(self.top_k, int) or not 0 <= self.top_k < 2**31:
            raise SettingsError(f"top_k must be an integer from 0 (off) to 2^31 - 1, got {str(self.top_k)[:40]}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 0:
            raise SettingsError(f"max_tokens must be a non-negative integer, got {self.max_tokens!r}")
        if not 0.0 <= float(self.temperature) <= 10.0:
            raise SettingsError(f"temperature must be between 0 and 10, got {self.temperature!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise SettingsError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise SettingsError(f"top_k must be a non-negative integer (0 = off), got {self.top_k!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise SettingsError("stop must be a list of non-empty strings")
        for s in self.stop:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise SettingsError(f"stop string {s[:40]!r} is not valid Unicode text (a lone surrogate)") from None
        return self

    def sampler(self) -> SamplerChain:
        return SamplerChain(temperature=float(self.temperature), top_k=self.top_k, top_p=float(self.top_p), seed=self.seed)
