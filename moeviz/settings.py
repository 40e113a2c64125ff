"""Every per-run setting, defined once.

One `Setting` per thing a run can be asked for: its name, type, default, range, help
line, the llama.cpp sampler (or loop / router setting) it drives and how a trace keeps
it (`settings.<name>`). Everything else is derived from this table:

- engine/sampling.py   `SamplingSettings` (its fields are the SAMPLING entries)
- llama/sampler.py     the chain, in llama-server's order (common/sampling.cpp)
- cli.py               the run flags of record / export (`add_run_flags`)
- server/requests.py   the websocket `generate` fields (`from_message`)
- server/openai_shapes the OpenAI / llama-server request fields (`from_message`, aliases)
- trace/schema.py      the types checked in a trace's `settings` (`check_recorded`)
- the page             its inputs' defaults and ranges (GET /api/settings: `to_json`)

Adding a sampler parameter (say `min_p`) is one entry here plus its call in
llama/sampler.py. Load-time options (context size, offload, KV type, capture) are not
run settings: they belong to the engine's options.

Sits at the bottom of the layers (errors only): every layer may import it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import UserError


class SettingsError(UserError, ValueError):
    """A run setting is missing its type or out of its range; the message names it."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


INT32_MAX = 2**31 - 1
MAX_STOP = 16                 # stop strings per run (llama-server has no limit; the page and the API share this)
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 1024         # entries in logit_bias
MAX_GRAMMAR_CHARS = 64 << 10  # GBNF text (llama.cpp's parser recurses: long inputs are refused before it)


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    kind: str                    # "int", "float", "bool", "strings", "logit_bias", "text"
    default: Any
    help: str
    drives: str                  # the llama.cpp call (or loop / router part) the value reaches
    lo: float | None = None      # inclusive range (None: unbounded that side)
    hi: float | None = None
    aliases: tuple[str, ...] = ()      # other request names for it (llama-server's, OpenAI's)
    commands: tuple[str, ...] = ("record", "export")   # CLI subcommands with a flag for it
    page: bool = False           # an input in the page's Generate card
    group: str = "sampling"      # "sampling": a SamplingSettings field; "run": recorded beside them
    metavar: str | None = None
    lo_open: bool = False        # the range excludes `lo` itself

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def trace(self) -> str:
        """Where a trace keeps it."""
        return f"settings.{self.name}"

    def range_text(self) -> str:
        what = "an integer" if self.kind == "int" else "a number"
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"{what} above {lo} and up to {hi}" if self.lo_open else f"{what} from {lo} to {hi}"
        if self.lo is not None:
            return f"{what} of at least {lo}"
        return what

    def check(self, v, where: str | None = None):
        """`v` as this setting holds it, or SettingsError naming `where` (default: the name)."""
        where = where or self.name
        if self.kind in ("int", "float"):
            ok_type = isinstance(v, int) if self.kind == "int" else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type:
                raise SettingsError(f"'{where}' must be {self.range_text()}, got {_show(v)}", self.name)
            try:
                num = float(v)    # a JSON integer of 400 digits is no float
            except OverflowError:
                raise SettingsError(f"'{where}' must be {self.range_text()}, got {_show(v)}", self.name) from None
            if not math.isfinite(num) or (self.lo is not None and (num < self.lo or (self.lo_open and num == self.lo))) or (self.hi is not None and num > self.hi):
                raise SettingsError(f"'{where}' must be {self.range_text()}, got {_show(v)}", self.name)
            return int(v) if self.kind == "int" else float(v)
        if self.kind == "bool":
            if not isinstance(v, bool):
                raise SettingsError(f"'{where}' must be true or false", self.name)
            return v
        if self.kind == "text":
            if not isinstance(v, str) or len(v) > self.hi:
                raise SettingsError(f"'{where}' must be text of at most {_num(self.hi)} characters", self.name)
            _utf8(v, where, self.name)
            return v
        if self.kind == "strings":
            return _strings(v, where, self.name)
        if self.kind == "logit_bias":
            return _logit_bias(v, where, self.name)
        raise AssertionError(self.kind)

    def to_json(self) -> dict:
        out = {"name": self.name, "type": self.kind, "default": self.default, "help": self.help,
               "drives": self.drives, "trace": self.trace}
        if self.lo is not None:
            out["min"] = self.lo
            out["min_excluded"] = self.lo_open
        if self.hi is not None:
            out["max"] = self.hi
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out["page"] = self.page
        return out


def _num(v) -> str:
    return str(int(v)) if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53) else f"{v:g}"


def _show(v) -> str:
    return str(v)[:40]


def _utf8(s: str, where: str, param: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SettingsError(f"'{where}' holds {s[:40]!r}: not valid Unicode text (a lone surrogate)", param) from None


def _strings(v, where: str, param: str) -> list[str]:
    if isinstance(v, str):          # OpenAI: one stop string may be given bare
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise SettingsError(f"'{where}' must be a non-empty string or a list of them", param)
    if len(v) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in v):
        raise SettingsError(f"'{where}' takes up to {MAX_STOP} strings of up to {MAX_STOP_CHARS} characters", param)
    for s in v:
        _utf8(s, where, param)
    return v


BIAS_LIMIT = 100.0     # OpenAI's range is -100..100; llama.cpp adds any float


def _logit_bias(v, where: str, param: str) -> list[list]:
    """OpenAI's {"token id": bias} or llama-server's [[id or text, bias or false], ...]
    (also {"text": bias}), as the list form: [[int id or str text, float bias or False]].
    False: never this token (llama-server's `false`, a bias of -infinity)."""
    if isinstance(v, dict):
        items = list(v.items())
    elif isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 for p in v):
        items = [tuple(p) for p in v]
    else:
        raise SettingsError(f"'{where}' must be an object {{token id or text: bias}} or a list of [token, bias] "
                            "pairs", param)
    if len(items) > MAX_LOGIT_BIAS:
        raise SettingsError(f"'{where}' has {len(items)} entries; the limit is {MAX_LOGIT_BIAS}", param)
    out = []
    for key, bias in items:
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, (int, str)) or (isinstance(key, int) and not 0 <= key <= INT32_MAX) \
                or (isinstance(key, str) and not 0 < len(key) <= MAX_STOP_CHARS):
            raise SettingsError(f"'{where}': {repr(key)[:40]} is neither a token id nor a non-empty text", param)
        if isinstance(key, str):
            _utf8(key, where, param)
        if bias is False:
            out.append([key, False])
            continue
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(float(bias)) \
                or abs(float(bias)) > BIAS_LIMIT:
            raise SettingsError(f"'{where}': the bias of {repr(key)[:40]} must be a number from -100 to 100 (or false: "
                                f"never), got {_show(bias)}", param)
        out.append([key, float(bias)])
    return out


def _s(name, kind, default, help, drives, **kw) -> Setting:
    return Setting(name, kind, default, help, drives, **kw)


# In llama-server's chain order (common/sampling.cpp: logit bias, then penalties, top-n-sigma,
# top-k, typical, top-p, min-p, XTC, temperature, the seeded draw); llama/sampler.py builds it so.
SETTINGS: tuple[Setting, ...] = (
    _s("max_tokens", "int", 64, "tokens to generate at most (the run also ends where the context is full)",
       "loop: the generation's length", lo=0, hi=INT32_MAX, aliases=("n_predict", "max_completion_tokens"),
       page=True, metavar="N"),
    _s("logit_bias", "logit_bias", [], "added to these tokens' logits: [[token id or text, bias or false], ...]",
       "llama_sampler_init_logit_bias", commands=("record",)),
    _s("repeat_penalty", "float", 1.0, "divide the logits of tokens among the last repeat_last_n (1 = off)",
       "llama_sampler_init_penalties", lo=0.0, hi=10.0, lo_open=True),
    _s("repeat_last_n", "int", 64, "tokens the penalties look back over (0 = off, -1 = the whole context)",
       "llama_sampler_init_penalties", lo=-1, hi=INT32_MAX, metavar="N"),
    _s("presence_penalty", "float", 0.0, "subtract from the logits of tokens already seen (0 = off)",
       "llama_sampler_init_penalties", lo=-2.0, hi=2.0),
    _s("frequency_penalty", "float", 0.0, "subtract, per occurrence, from the logits of tokens seen (0 = off)",
       "llama_sampler_init_penalties", lo=-2.0, hi=2.0),
    _s("top_n_sigma", "float", -1.0, "keep tokens within n standard deviations of the top logit (-1 or 0 = off)",
       "llama_sampler_init_top_n_sigma", lo=-1.0, hi=100.0),
    _s("top_k", "int", 40, "keep the k most likely tokens (0 = off)", "llama_sampler_init_top_k", lo=0, hi=INT32_MAX,
       metavar="K"),
    _s("typical_p", "float", 1.0, "locally typical sampling (1 = off)", "llama_sampler_init_typical", lo=0.0, hi=1.0,
       aliases=("typ_p",)),
    _s("top_p", "float", 0.95, "keep the most likely tokens whose probabilities add up to p (1 = off)",
       "llama_sampler_init_top_p", lo=0.0, hi=1.0, lo_open=True),
    _s("min_p", "float", 0.05, "drop tokens less likely than min_p times the most likely one (0 = off)",
       "llama_sampler_init_min_p", lo=0.0, hi=1.0),
    _s("xtc_probability", "float", 0.0, "exclude-top-choices: chance of dropping the likeliest tokens (0 = off)",
       "llama_sampler_init_xtc", lo=0.0, hi=1.0),
    _s("xtc_threshold", "float", 0.1, "exclude-top-choices: tokens above this probability may be dropped",
       "llama_sampler_init_xtc", lo=0.0, hi=1.0),
    _s("temperature", "float", 0.8, "sampling temperature (0 = greedy: always the most likely token)",
       "llama_sampler_init_temp", lo=0.0, hi=10.0, aliases=("temp",), page=True),
    _s("dynatemp_range", "float", 0.0, "dynamic temperature: temperature +- this, by the entropy (0 = off)",
       "llama_sampler_init_temp_ext", lo=0.0, hi=10.0),
    _s("dynatemp_exponent", "float", 1.0, "dynamic temperature: how entropy maps to temperature",
       "llama_sampler_init_temp_ext", lo=0.0, hi=10.0),
    _s("seed", "int", 0, "seed of the random draw (the same seed and settings give the same tokens)",
       "llama_sampler_init_dist", lo=0, hi=2**32 - 1, page=True),
    _s("stop", "strings", [], "stop strings: the run ends after the token that completes one (repeatable)",
       "loop: stop strings over the generated text", commands=("record",), metavar="TEXT"),
    _s("grammar", "text", "", "GBNF grammar every generated token must follow (llama.cpp's grammar sampler)",
       "llama_sampler_init_grammar", hi=MAX_GRAMMAR_CHARS, commands=("record",), metavar="GBNF"),
    # recorded beside the sampling settings: what the run captured
    _s("probs", "bool", False, "also record full router probabilities over all experts",
       "capture: the routers' softmax over every expert", group="run", page=True),
    _s("candidates", "int", 0, "also record each position's top-N next tokens and their probabilities",
       "engine: the output head's top-N per row", lo=0, hi=1000, commands=("record",), group="run", metavar="N"),
)
BY_NAME = {s.name: s for s in SETTINGS}
SAMPLING = tuple(s for s in SETTINGS if s.group == "sampling")
ALIASES = {a: s.name for s in SETTINGS for a in s.aliases}


def default_of(s: Setting):
    return list(s.default) if isinstance(s.default, list) else s.default


def from_message(msg: dict, names=None, *, where=None) -> dict:
    """The settings a request gives (by name or alias), checked: {name: value}. Absent or
    null ones are left out (the caller's defaults apply). `names`: the settings this
    surface takes (default: all). An alias and its name both given is refused."""
    out = {}
    for s in SETTINGS if names is None else (BY_NAME[n] for n in names):
        given = [k for k in (s.name, *s.aliases) if msg.get(k) is not None]
        if len(given) > 1:
            raise SettingsError(f"'{given[0]}' and '{given[1]}' are the same setting: give one", s.name)
        if given:
            out[s.name] = s.check(msg[given[0]], where(given[0]) if where else given[0])
    return out


def check_recorded(settings: dict, error=SettingsError) -> None:
    """A trace's `settings` values have their settings' types (ranges are not re-checked:
    a trace from an older moeviz with other limits still reads)."""
    for s in SETTINGS:
        v = settings.get(s.name)
        if v is None:
            continue
        ok = {"int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": isinstance(v, bool), "text": isinstance(v, str),
              "strings": isinstance(v, list) and all(isinstance(x, str) for x in v),
              "logit_bias": isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 for p in v)}[s.kind]
        if not ok:
            kinds = {"int": "an integer", "float": "a number", "bool": "a bool", "text": "a string",
                     "strings": "a list of strings", "logit_bias": "a list of [token, bias] pairs"}
            raise error(f"settings.{s.name} must be {kinds[s.kind]}")


def to_json(defaults: dict | None = None) -> list[dict]:
    """The table, for the page (GET /api/settings) and docs; `defaults`: a server's own
    (serve --temperature ...) in place of the table's."""
    defaults = defaults or {}
    return [{**s.to_json(), **({"default": defaults[s.name]} if s.name in defaults else {})} for s in SETTINGS]


def with_defaults(given: dict, defaults: dict | None) -> dict:
    """A request's settings over a server's defaults (serve --temperature ...: what a
    request that leaves a setting out gets, as llama-server's flags do)."""
    return {**(defaults or {}), **given}
