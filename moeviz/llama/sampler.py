"""llama.cpp's sampler chain, owned (freed with close())."""
from __future__ import annotations

from .lib import llama_cpp


class SamplerChain:
    """top-k -> top-p -> temperature -> seeded draw; greedy at temperature 0."""

    def __init__(self, *, temperature: float, top_k: int, top_p: float, seed: int):
        lc = llama_cpp()
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if temperature <= 0.0:
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_greedy())
        else:
            if top_k > 0:
                lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_top_k(top_k))
            if top_p < 1.0:
                lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_top_p(top_p, 1))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_temp(temperature))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_dist(seed))

    def sample(self, ctx, row: int = -1) -> int:
        """Sample from batch row `row` of the latest decode (-1: its last output row)."""
        return int(llama_cpp().llama_sampler_sample(self.chain, ctx, row))

    def close(self) -> None:
        if self.chain:
            llama_cpp().llama_sampler_free(self.chain)
            self.chain = None
