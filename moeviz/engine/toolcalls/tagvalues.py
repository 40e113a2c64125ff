"""Where a tagged argument value ends, for the families that write each value between tags
(GLM-4.5 / 4.6 / 4.7, Ling 3.0, Laguna, Tencent Hy3, Qwen3-Coder and its thinking templates, Seed-OSS).

A value may hold its own closing tag or the call's (a coding agent passing a file that holds
`</arg_value>` or `</tool_call>`). llama.cpp reads a value up to its family's value suffix, the
closing tag and the separator the template writes after it (`</arg_value>\\n` for GLM-4.6 and Hy3,
`\\n</parameter>\\n` for Qwen3-Coder, `</parameter>\\n` for Seed-OSS), and looks for the call's
closing tag only after its values. Here a value's closing tag ends it where what follows (past
whitespace) is what may follow a value: the next argument, the function's or the call's end, or
the end of the text. A closing tag followed by other text is part of the value, as it is in
llama.cpp for those templates (the templates writing tight tags, GLM-4.7's, Ling 3.0's and
Laguna's, make llama.cpp refuse such an output; it is read the same way here).
"""
from __future__ import annotations

from .argschema import properties, tagged_value

_SPACE = " \t\r\n"


class ValueClose:
    """A family whose values are tagged: `value_tags` (what opens a value, or the argument holding it,
    and the value's closing tag); `value_follows`: what may follow a value's closing tag."""
    value_tags = ("<arg_value>", "</arg_value>")
    value_follows: tuple[str, ...] = ("<arg_key>", "</tool_call>")

    def value_end(self, text: str, start: int, partial: bool = False) -> int:
        """Where the value starting at `start` ends (its closing tag's index), -1 while it has not:
        while `partial`, a closing tag the text ends in (or in the beginning of a follower)
        waits for the next tokens."""
        close = self.value_tags[1]
        i = text.find(close, start)
        while i >= 0:
            j = i + len(close)
            while j < len(text) and text[j] in _SPACE:
                j += 1
            if text.startswith(self.value_follows, j):
                return i
            rest = text[j:j + max(map(len, self.value_follows)) + 1]
            if any(f.startswith(rest) for f in self.value_follows):     # the end of the text so far
                return -1 if partial else i
            i = text.find(close, j)
        return -1

    def _close_at(self, body: str, k: int) -> int:
        """The call's closing tag: the first past its values."""
        value_open, value_close = self.value_tags
        while True:
            c, o = body.find(self.call_close, k), body.find(value_open, k)
            if c < 0 or o < 0 or c < o:
                return c
            e = self.value_end(body, o + len(value_open))
            if e < 0:
                return -1
            k = e + len(value_close)

    def tag_pairs(self, seg: str, pos: int, tags: tuple[str, str, str, str], root, partial: bool) -> tuple[list, int]:
        """The whole (key, value) pairs written `KEY_OPEN k KEY_CLOSE VALUE_OPEN v VALUE_CLOSE` from `pos`
        on, each value typed by the tool's parameters schema `root` (argschema.tagged_value), and where
        they end."""
        key_open, key_close, value_open, value_close = tags
        props, pairs = properties(root), []
        while True:
            o = seg.find(key_open, pos)
            k = seg.find(key_close, o + len(key_open)) if o >= 0 else -1
            v = seg.find(value_open, k + len(key_close)) if k >= 0 else -1
            e = self.value_end(seg, v + len(value_open), partial) if v >= 0 else -1
            if e < 0:
                return pairs, pos
            key = seg[o + len(key_open):k].strip()
            pairs.append((key, tagged_value(seg[v + len(value_open):e], props.get(key), root)))
            pos = e + len(value_close)
