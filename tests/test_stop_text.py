"""Issue 21 finding 11 (stop strings): the API's stop-string view of a stream (StopText,
engine/text.py) is incremental. It searched the whole text and every prefix of every stop
string on each token, on the event loop: four 20,000-character stop strings made a
1,024-token stream 2.2x slower and held /health 0.55 s. Its answers must not change: each
is checked against the plain definition below on random texts, pieces and stop strings.
The server-level case (/health during such a stream) is in test_load.py."""
from __future__ import annotations

import random

from moeviz.engine.text import StopText


class Reference:
    """The definition: the answer ends before the earliest stop string found in the text;
    while streaming, the longest tail that begins some stop string is held back."""

    def __init__(self, stop):
        self.stop, self.text, self.sent = [s for s in stop if s], "", 0

    def _cut(self):
        found = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _held(self):
        return max((n for s in self.stop for n in range(1, min(len(s) - 1, len(self.text)) + 1)
                    if self.text.endswith(s[:n])), default=0)

    def push(self, piece):
        self.text += piece
        end = self._cut()
        end = len(self.text) - self._held() if end is None else end
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    def finish(self):
        end = self._cut()
        end = len(self.text) if end is None else end
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    @property
    def final(self):
        end = self._cut()
        return self.text if end is None else self.text[:end]


def test_stop_text_gives_the_definitions_answers():
    rng = random.Random(21)
    for trial in range(6000):
        alpha = "ab" if trial % 2 else "abc \n"
        stops = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 3))]
        ref, got = Reference(stops), StopText(stops)
        outs_ref, outs_got = [], []
        for _ in range(rng.randint(1, 10)):
            piece = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 5)))
            outs_ref.append(ref.push(piece))
            outs_got.append(got.push(piece))
            if ref._cut() is not None:
                break   # generation stops after the token that completes a stop string
        outs_ref.append(ref.finish())
        outs_got.append(got.finish())
        assert (outs_got, got.final) == (outs_ref, ref.final), (stops, outs_ref, outs_got)


def test_long_stop_strings_cost_only_what_a_piece_reaches():
    """Four 20,000-character stop strings over 1,024 pieces that never begin them: the work
    (the failure tables built) stays at the few characters the text reached, and the text
    is handed out whole."""
    rng = random.Random(0)
    stops = ["".join(rng.choice("abcdefgh") for _ in range(20000)) for _ in range(4)]
    st = StopText(stops)
    out = "".join(st.push(" the" if i % 2 else " cat") for i in range(1024)) + st.finish()
    assert out == "".join(" the" if i % 2 else " cat" for i in range(1024)) == st.final
    assert max(len(a.fail) for a in st._automata) <= 2


def test_the_loops_stop_decision_is_the_definitions():
    """StopStrings (the slot loop's "stop after this token") hits on the first token whose
    text completes a stop string anywhere in the text so far, as `s in text` says."""
    from moeviz.engine.text import StopStrings

    rng = random.Random(22)
    for trial in range(6000):
        alpha = "ab" if trial % 2 else "abc \n"
        stops = ["".join(rng.choice(alpha) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3))]
        loop, text = StopStrings(stops), ""
        for _ in range(rng.randint(1, 10)):
            piece = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 5)))
            text += piece
            want = any(s in text for s in stops)
            assert loop.hit(piece) == want, (stops, text)
            if want:
                break
