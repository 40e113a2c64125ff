"""Sampling settings and llama.cpp's sampler chain built from them."""
from __future__ import annotations

import dataclasses

from ..capture.lib import llama_cpp


class SettingsError(ValueError):
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
        return self


class Sampler:
    """llama.cpp sampler chain: top-k -> top-p -> temperature -> seeded draw (greedy at T=0)."""

    def __init__(self, s: SamplingSettings):
        lc = llama_cpp()
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if s.temperature <= 0.0:
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_top_k(s.top_k))
            if s.top_p < 1.0:
                lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_top_p(s.top_p, 1))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_temp(s.temperature))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_dist(s.seed))

    def sample(self, ctx) -> int:
        """Sample from the last output row of the latest decode."""
        return int(llama_cpp().llama_sampler_sample(self.chain, ctx, -1))

    def close(self) -> None:
        if self.chain:
            llama_cpp().llama_sampler_free(self.chain)
            self.chain = None
