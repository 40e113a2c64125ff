"""Sampling settings, validated, and the llama.cpp sampler chain they make.

`SamplingSettings` has one field per sampling entry of moeviz/settings.py (name and
default from there); `validate` checks each against its entry. The chain is built in
llama/sampler.py.
"""
from __future__ import annotations

import dataclasses

from ..llama.grammar import check_gbnf
from ..llama.sampler import SamplerChain
from ..settings import SAMPLING, SettingsError, default_of

__all__ = ["SamplingSettings", "SettingsError"]


def _field(s):
    if isinstance(s.default, list):
        return dataclasses.field(default_factory=lambda s=s: default_of(s))
    return dataclasses.field(default=s.default)


def _validate(self) -> "SamplingSettings":
    for s in SAMPLING:
        object.__setattr__(self, s.name, s.check(getattr(self, s.name)))
    if self.grammar:
        check_gbnf(self.grammar)   # what could hurt llama.cpp's parser; the parser itself judges the rest
    return self


def _sampler(self, prompt_tokens=()) -> SamplerChain:
    """The llama.cpp chain for these settings (built on its first sample, from the
    context's model). `prompt_tokens`: the run's prompt, which the penalties look back
    over (as llama-server feeds its slot's prompt to the sampler)."""
    return SamplerChain(self, prompt_tokens)


SamplingSettings = dataclasses.make_dataclass(
    "SamplingSettings", [(s.name, object, _field(s)) for s in SAMPLING],
    namespace={"validate": _validate, "sampler": _sampler,
               "__doc__": "One run's sampling settings: a field per sampling entry of moeviz/settings.py."})
SamplingSettings.__module__ = __name__
