"""Grammar-constrained decode speed as a ratio to unconstrained decoding, in one run, on
the demo model and on a model with Qwen3's 151,936-token vocabulary
(moeviz.fixtures.models.QWEN3_30B_SHAPE, generated into a temporary folder).

Every configuration samples (temperature 0.8, fixed seeds) the same prompt; rounds
interleave the configurations (drift cancels out) after an uncounted warm-up round:

  none         no grammar (the baseline)
  permissive   a grammar almost every token fits (`[^\\x00]*`): llama-server's rejection
               sampling checks the drawn token only, the cheap path
  json-numbers a JSON schema (an array of at least 64 integers) converted by
               llama-cpp-python's json_schema_to_gbnf: few tokens fit (digits, commas),
               so most draws fail, the grammar is applied to the whole vocabulary and
               the token drawn again: the expensive path
  json-text    a schema with a string of at least 400 characters: most tokens fit

Decode tokens/s counts generated tokens over decode time (a grammar run may end early
when its grammar is complete: fewer tokens, same rate); tokens per CPU second divide by
the process's CPU time over the decode instead (all its threads), which other programs
on a shared machine disturb far less than wall-clock time.

    .venv/bin/python bench/grammar_speed.py [--rounds 3] [--tokens 48]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _harness  # noqa: F401 - moeviz from this checkout

from moeviz.demo import default_model_path
from moeviz.engine import Engine, Finished, PromptRouted, SamplingSettings
from moeviz.fixtures import write_fixture
from moeviz.fixtures.models import QWEN3_30B_SHAPE
from moeviz.llama.grammar import grammar_for
from moeviz.llama.sampler import SamplerChain

PROMPT = "Reply with a JSON object describing a cat: "
NUMBERS = {"type": "object", "properties": {"values": {"type": "array", "items": {"type": "integer"}, "minItems": 64}},
           "required": ["values"], "additionalProperties": False}
TEXT = {"type": "object", "properties": {"text": {"type": "string", "minLength": 400}}, "required": ["text"],
        "additionalProperties": False}
GRAMMARS = {"none": "", "permissive": "root ::= [^\\x00]*",
            "json-numbers": grammar_for(json_schema=NUMBERS), "json-text": grammar_for(json_schema=TEXT)}


class SampleClock:
    """Time spent in SamplerChain.sample (the draw, the grammar check and any redraw),
    per call: the grammar's own cost, apart from the model's decode."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0
        timed = SamplerChain.sample

        def sample(chain, ctx, row=-1):
            t0 = time.perf_counter()
            try:
                return timed(chain, ctx, row)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        SamplerChain.sample = sample


CLOCK = SampleClock()


def decode_rate(engine, grammar: str, n_tokens: int, seed: int) -> tuple[float, float, float]:
    """(generated tokens per wall-clock second, per CPU second of this process (every
    llama.cpp thread counted: other programs sharing the cores move it less), sampler
    milliseconds per token)."""
    settings = SamplingSettings(max_tokens=n_tokens, temperature=0.8, seed=seed, grammar=grammar)
    cpu0 = None
    s0, c0 = CLOCK.seconds, CLOCK.calls
    for ev in engine.generate(PROMPT, settings):
        if isinstance(ev, PromptRouted):
            cpu0 = time.process_time()      # the events come on this thread, between decodes
        elif isinstance(ev, Finished):
            cpu = time.process_time() - cpu0
            ms = 1000 * (CLOCK.seconds - s0) / max(1, CLOCK.calls - c0)
            return ev.n_generated / ev.decode_seconds, ev.n_generated / cpu, ms
    raise RuntimeError("no Finished event")


def bench_model(label: str, path, rounds: int, n_tokens: int) -> None:
    engine = Engine(str(path), n_ctx=512)
    try:
        info = engine.info
        print(f"\n{label}: {info.architecture}, vocabulary {info.n_vocab}, {len(info.moe_layers)} MoE layers x "
              f"{info.n_expert} experts, top-{info.n_expert_used}")
        rates = {k: ([], [], []) for k in GRAMMARS}
        for r in range(rounds + 1):
            order = list(GRAMMARS) if r % 2 == 0 else list(GRAMMARS)[::-1]
            for k in order:
                measured = decode_rate(engine, GRAMMARS[k], n_tokens, seed=r)
                if r > 0:
                    for into, value in zip(rates[k], measured):
                        into.append(value)
        base_wall, base_cpu, _ = (statistics.median(v) for v in rates["none"])
        print(f"{'grammar':<14}{'decode tok/s':>14}{'ratio':>8}{'tok/CPU-s':>12}{'ratio':>8}{'sampler ms/tok':>16}")
        for k, (walls, cpus, mss) in rates.items():
            wall, cpu, ms = statistics.median(walls), statistics.median(cpus), statistics.median(mss)
            print(f"{k:<14}{wall:>14.1f}{wall / base_wall:>8.3f}{cpu:>12.1f}{cpu / base_cpu:>8.3f}{ms:>16.2f}")
    finally:
        engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32, help="tokens generated per run at most")
    args = ap.parse_args()
    bench_model("demo model", default_model_path(), args.rounds, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fixture(Path(tmp) / "qwen3-shape.gguf", QWEN3_30B_SHAPE)
        bench_model("Qwen3-30B-A3B shape (151,936-token vocabulary)", path, args.rounds, args.tokens)
    print(f"\n(median of {args.rounds} interleaved rounds after a warm-up; temperature 0.8, up to {args.tokens} "
          "tokens per run)")


if __name__ == "__main__":
    main()
