"""Issue 21 finding 2: no shared mutable ctypes buffer in moeviz/llama/ across threads.

LoadedModel.piece() reused one buffer: the API's threadpool rendering a chat prompt (the
template's <|endoftext|>) wrote into it while the worker turned each generated token into
text, and 20 of 20 temperature-0 answers held bytes of `<|endoftext|>` on the probe's
machine. A C call lasts a microsecond, so on a busy 2-core machine two threads are seldom
inside it together: `widened` makes llama_token_to_piece (the real one) keep the GIL
released a millisecond after it has written its buffer, so a shared buffer is overwritten
every time, not once in a thousand runs. The server-level case is in test_load.py."""
from __future__ import annotations

import ctypes
import threading
import time

import pytest

from moeviz.demo import default_model_path
from moeviz.engine import Engine, SamplingSettings
from moeviz.llama import model as llama_model
from moeviz.llama.lib import llama_cpp
from moeviz.record import record

PROMPT = "def main(args):\n    "
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "list of numbers"}]


@pytest.fixture
def widened(monkeypatch):
    lc = llama_cpp()
    real = lc.llama_token_to_piece

    def token_to_piece(*args):
        n = real(*args)
        time.sleep(0.001)   # the buffer holds this call's piece; other threads run meanwhile
        return n

    monkeypatch.setattr(lc, "llama_token_to_piece", token_to_piece)
    return real


@pytest.fixture(scope="module")
def engine():
    e = Engine(default_model_path(), n_ctx=256)
    yield e
    e.close()


def texts(trace) -> list[str]:
    return [t["text"] for t in trace.tokens]


@pytest.mark.slow
def test_chat_tokenization_beside_a_generation_leaves_its_text_alone(engine, widened):
    greedy = SamplingSettings(max_tokens=16, temperature=0.0)
    alone = texts(record(engine, PROMPT, greedy))
    expected_chat = engine.prompt_tokens(CHAT)
    stop, seen = threading.Event(), []

    def tokenize():
        while not stop.is_set():
            seen.append(engine.prompt_tokens(CHAT) == expected_chat)

    threads = [threading.Thread(target=tokenize) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        together = texts(record(engine, PROMPT, greedy))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen and all(seen), (len(seen), seen.count(False))
    assert together == alone, [(i, a, b) for i, (a, b) in enumerate(zip(alone, together)) if a != b][:5]


def test_pieces_from_many_threads_are_each_their_own(engine, widened):
    lm = engine.lm
    eos = llama_cpp().llama_vocab_eos(lm.vocab)
    tokens = [eos, *range(200, 208)]
    expected = {t: lm.piece(t) for t in tokens}
    got: list[tuple[int, bytes]] = []

    def ask(t):
        for _ in range(10):
            got.append((t, lm.piece(t)))

    threads = [threading.Thread(target=ask, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wrong = [(t, b, expected[t]) for t, b in got if b != expected[t]]
    assert len(got) == 10 * len(tokens) and not wrong, wrong[:5]


def test_no_ctypes_buffer_is_kept_on_a_loaded_model(engine):
    """The audit as a rule: a LoadedModel (shared by the worker and the API's threads)
    holds no mutable ctypes buffer of its own."""
    held = {k: type(v).__name__ for k, v in vars(engine.lm).items() if isinstance(v, ctypes.Array)}
    assert not held, held
    assert isinstance(engine.lm, llama_model.LoadedModel)
