"""Engine behaviour: text, chat templates, stopping, cancelling, limits."""
import threading

import pytest

from moeviz.engine import BusyError, Finished, PromptError, PromptRouted, SamplingSettings, SettingsError, TokenRouted
from moeviz.engine.text import Detokenizer


def events(engine, prompt, **kw):
    return list(engine.generate(prompt, SamplingSettings(**kw)))


def test_prompt_token_texts_rebuild_the_prompt_exactly(engines):
    prompt = "Größe café 日本語 naïve — “quotes” 🙂 done"
    evs = events(engines("llama"), prompt, max_tokens=0)
    assert isinstance(evs[0], PromptRouted) and isinstance(evs[-1], Finished)
    assert "".join(t.text for t in evs[0].tokens) == prompt
    # Multi-byte characters split over byte tokens show up whole, on the completing token.
    assert any(t.text == "" for t in evs[0].tokens)


def test_detokenizer_never_splits_a_character():
    d = Detokenizer()
    b = "é🙂".encode()
    assert [d.push(b[:1]), d.push(b[1:3]), d.push(b[3:5]), d.push(b[5:])] == ["", "é", "", "🙂"]


def test_chat_messages_use_the_model_template(engines):
    e = engines("llama")
    toks = e.prompt_tokens([{"role": "user", "content": "hi there"}])
    text = "".join(e.lm.piece(t).decode() for t in toks)
    assert text == "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    assert e.lm.token_text(toks[0]) == "<|im_start|>"     # parsed as the special token, not as characters
    with pytest.raises(PromptError, match="chat message 0"):
        e.prompt_tokens([{"role": "user"}])


def test_max_tokens_and_finish_reason(engines):
    evs = events(engines("llama"), "Once upon a time", max_tokens=7, temperature=0.0)
    toks = [e for e in evs if isinstance(e, TokenRouted)]
    assert len(toks) == 7 and evs[-1].reason == "length" and evs[-1].n_generated == 7
    n_prompt = len(evs[0].tokens)
    assert [t.index for t in toks] == list(range(n_prompt, n_prompt + 7))


def test_stop_string_ends_generation(engines):
    e = engines("llama")
    free = [ev.token.text for ev in events(e, "Once upon a time", max_tokens=12, temperature=0.0)
            if isinstance(ev, TokenRouted)]
    text = "".join(free)
    stop = next(s for s in (text[i:i + 2] for i in range(2, len(text) - 1)) if s.strip())
    evs = events(e, "Once upon a time", max_tokens=12, temperature=0.0, stop=[stop])
    got = "".join(ev.token.text for ev in evs if isinstance(ev, TokenRouted))
    assert evs[-1].reason == "stop" and stop in got and len(got) < len(text)


def test_cancel_from_another_thread(engines):
    e = engines("llama")
    cancel = threading.Event()
    seen = []
    for ev in e.generate("Once upon a time", SamplingSettings(max_tokens=200), cancel=cancel):
        seen.append(ev)
        if isinstance(ev, TokenRouted) and ev.index >= len(seen[0].tokens) + 2:
            threading.Thread(target=cancel.set).start()
            threading.Event().wait(0.05)
    assert seen[-1].reason == "cancelled" and seen[-1].n_generated < 200


def test_one_generation_at_a_time(engines):
    e = engines("llama")
    gen = e.generate("Once upon a time", SamplingSettings(max_tokens=3))
    next(gen)
    with pytest.raises(BusyError):
        next(e.generate("again", SamplingSettings(max_tokens=1)))
    list(gen)
    assert isinstance(events(e, "again", max_tokens=1)[-1], Finished)   # free again afterwards


def test_prompt_longer_than_context(engines):
    e = engines("llama")
    with pytest.raises(PromptError, match=r"the prompt is \d+ tokens, longer than the context \(512 tokens\)"):
        events(e, "word " * 600, max_tokens=1)


def test_generation_stops_at_a_full_context(engines):
    e = engines("llama")
    tokens = e.lm.tokenize("word " * 200, add_special=False, parse_special=False)[:508]          # a token list is accepted as the prompt
    evs = events(e, tokens, max_tokens=400, temperature=0.0)
    assert evs[-1].reason == "context"
    assert evs[-1].n_prompt == 508 and evs[-1].n_generated == 4


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(max_tokens=-3), dict(seed=-1),
                                 dict(stop=[""]), dict(top_k=1.5)])
def test_bad_settings(bad):
    with pytest.raises(SettingsError):
        SamplingSettings(**bad).validate()


def test_one_options_object_from_the_cli_flags(fixture_models):
    """EngineOptions is the engine's one set of load-time options: the CLI's flags map onto
    it by their argparse names (--threads -> n_threads), a command without a flag keeps
    the default, and an engine built from it is the one the same keywords build."""
    import argparse
    import dataclasses

    from moeviz.engine import Engine, EngineOptions
    from moeviz.engine.options import option_fields

    flags = {f.name: f.metadata.get("flag") for f in option_fields()}
    assert flags["n_threads"] == "--threads" and flags["kv_type"] == "--kv-type" and flags["n_batch"] is None
    assert all(f.metadata.get("help") for f in option_fields())
    args = argparse.Namespace(n_ctx=256, threads=2, kv_type="f32", flash_attn="off", capture="native",
                              experts_per_token=3, mask="*:0", prompt="not an option")
    opts = EngineOptions.from_args(args)
    assert (opts.n_ctx, opts.n_threads, opts.kv_type, opts.parallel, opts.mask) == (256, 2, "f32", 1, "*:0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.n_ctx = 512
    a = Engine(fixture_models["llama"], opts)
    b = Engine(fixture_models["llama"], n_ctx=256, n_threads=2, kv_type="f32", flash_attn="off", capture="native",
               experts_per_token=3, mask="*:0")
    try:
        assert a.options == b.options and a.lm.n_ctx == b.lm.n_ctx == 256
        assert a.default_interventions == b.default_interventions == (3, [(layer, 0) for layer in a.info.moe_layers])
        greedy = SamplingSettings(max_tokens=6, temperature=0.0)
        ra, rb = (list(e.generate("hello there", greedy)) for e in (a, b))
        assert [e.token.id for e in ra if isinstance(e, TokenRouted)] == [e.token.id for e in rb if isinstance(e, TokenRouted)]
        assert a.liveness.unusable() is None and a.placement_text() == b.placement_text()
    finally:
        a.close()
        b.close()
    with pytest.raises(SettingsError, match="KV cache type"):
        Engine(fixture_models["llama"], opts.replace(kv_type="q4"))
