"""The OpenAI API's request fields and response shapes, as llama-cpp-python's server
(0.3.36: llama_cpp/server/types.py, llama_cpp/llama_types.py, Llama._create_completion
and llama_chat_format._convert_text_completion*_to_chat) implements them, plus SGLang's
routed-experts extension and moeviz's own (docs/openai-api.md). Pure functions and
small accumulators: no I/O, no engine.
"""
from __future__ import annotations

import base64
import dataclasses
import secrets
import time
import uuid

import numpy as np

from ..engine import Finished, PromptRouted, SamplingSettings, SettingsError, TokenRouted
from ..errors import MoevizError, UserError

MAX_STOP = 4                 # OpenAI's limit on stop sequences
MAX_LOGPROBS = 20            # OpenAI's top_logprobs limit
MAX_CANDIDATES = 1000        # engine.candidates.MAX_CANDIDATES: the most tokens a row's candidates hold


class ApiRequestError(UserError, ValueError):
    """A request the API refuses; `param` names the field (OpenAI's error `param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class ApiKeyError(MoevizError):
    """A missing or wrong Bearer key (`serve --api-key`)."""

    status = 401


# Error bodies ---------------------------------------------------------------------------
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "unavailable_error"}


def error_body(message: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error object (llama-cpp-python's ErrorResponse: message, type, param, code)."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "internal_server_error"),
                      "param": param, "code": None}}


# Requests -------------------------------------------------------------------------------
@dataclasses.dataclass
class ApiRequest:
    chat: bool
    prompt: str | list[dict]
    settings: SamplingSettings
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    return_routed_experts: bool = False
    routed_experts_start_len: int = 0
    logprobs: int | None = None            # None: none; else how many top tokens per generated token

    @property
    def candidates(self) -> int:
        """Next-token candidates the run records so that every generated token's logprob
        is among them: the sampler draws from the top_k most likely (or the top one)."""
        if self.logprobs is None:
            return 0
        return max(self.logprobs, 1 if self.settings.temperature == 0 else self.settings.top_k)


def _number(body: dict, name: str, default, lo: float, hi: float):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ApiRequestError(f"'{name}' must be a number from {lo:g} to {hi:g}, got {str(v)[:40]}", name)
    return v


def _integer(body: dict, name: str, default, lo: int, hi: int | None = None):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise ApiRequestError(f"'{name}' must be an integer {bound}, got {str(v)[:40]}", name)
    return v


def _bool(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ApiRequestError(f"'{name}' must be true or false", name)
    return v


# Fields llama-cpp-python accepts that moeviz's sampler (top-k, top-p, temperature,
# seeded draw) has no counterpart for: refused unless they hold their neutral value.
_NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "repeat_penalty": 1, "min_p": 0,
            "mirostat_mode": 0, "min_tokens": 0, "best_of": 1, "echo": False, "suffix": None}
_UNSUPPORTED = ("logit_bias", "grammar", "tools", "functions", "tool_choice", "function_call")


def _message_content(m: dict, i: int) -> str:
    content = m.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise ApiRequestError(f"messages[{i}]: only text content is supported", "messages")
        return "".join(parts)
    raise ApiRequestError(f"messages[{i}].content must be a string or a list of text parts", "messages")


def parse_request(body, *, chat: bool, max_tokens_cap: int) -> ApiRequest:
    """Validate a /v1/completions (chat=False) or /v1/chat/completions body."""
    if not isinstance(body, dict):
        raise ApiRequestError("the request body must be a JSON object")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiRequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
        prompt = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise ApiRequestError(f"messages[{i}] must be an object with a string 'role'", "messages")
            prompt.append({"role": m["role"], "content": _message_content(m, i)})
    else:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            if len(prompt) > 1 or not all(isinstance(p, str) for p in prompt):
                raise ApiRequestError("'prompt' must be a string (or a list of one string): one completion per request",
                                      "prompt")
            prompt = prompt[0] if prompt else ""
        if not isinstance(prompt, str):
            raise ApiRequestError("'prompt' must be a string", "prompt")

    for name, neutral in _NEUTRAL.items():
        v = body.get(name)
        if v is not None and v != neutral:
            raise ApiRequestError(f"'{name}' is not supported by this server (moeviz samples with top_k, top_p, "
                                  "temperature and seed)", name)
    for name in _UNSUPPORTED:
        if body.get(name):
            raise ApiRequestError(f"'{name}' is not supported by this server", name)
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiRequestError("'response_format' other than text is not supported by this server", "response_format")
    if _integer(body, "n", 1, 1) != 1:
        raise ApiRequestError("'n' must be 1: one completion per request", "n")
    if chat:
        logprobs = _integer(body, "top_logprobs", 0, 0, MAX_LOGPROBS) if _bool(body, "logprobs") else None
        if logprobs is None and body.get("top_logprobs") is not None:
            raise ApiRequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    else:
        logprobs = _integer(body, "logprobs", None, 0, MAX_LOGPROBS)

    default_max = 16 if not chat else max_tokens_cap        # llama-cpp-python: 16; chat: "inf" (to the limit)
    max_tokens = body.get("max_tokens")
    if max_tokens is None and chat:
        max_tokens = body.get("max_completion_tokens")
        name = "max_completion_tokens"
    else:
        name = "max_tokens"
    max_tokens = _integer({name: max_tokens}, name, default_max, 0)
    if max_tokens > max_tokens_cap:
        raise ApiRequestError(f"{name} {max_tokens} is over this server's limit of {max_tokens_cap}", name)

    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > MAX_STOP:
        raise ApiRequestError(f"'stop' must be a string or a list of up to {MAX_STOP} strings", "stop")
    stop = [s for s in stop if s]

    seed = body.get("seed")
    if seed is None or seed == -1:                  # llama.cpp's -1: a random seed
        seed = secrets.randbits(32)                 # the trace keeps it: the permalink's run is reproducible
    seed = _integer({"seed": seed}, "seed", 0, 0, 2**32 - 1)
    settings = SamplingSettings(max_tokens=max_tokens, temperature=_number(body, "temperature", 0.8, 0, 2),
                                top_p=_number(body, "top_p", 0.95, 0, 1), top_k=_integer(body, "top_k", 40, 0),
                                seed=seed, stop=stop)
    try:
        settings.validate()
    except SettingsError as e:
        raise ApiRequestError(str(e)) from None
    if logprobs is not None and settings.temperature > 0 and not 0 < settings.top_k <= MAX_CANDIDATES:
        raise ApiRequestError(f"logprobs with temperature above 0 need top_k from 1 to {MAX_CANDIDATES} (the "
                              "sampled token must be among the tokens whose logprobs are kept)", "top_k")

    stream = _bool(body, "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise ApiRequestError("'stream_options' must be an object", "stream_options")
    include_usage = bool(stream and opts and _bool(opts, "include_usage"))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiRequestError("'model' must be a string", "model")
    return ApiRequest(chat=chat, prompt=prompt, settings=settings, model=model, stream=stream,
                      include_usage=include_usage,
                      return_routed_experts=_bool(body, "return_routed_experts"),
                      routed_experts_start_len=_integer(body, "routed_experts_start_len", 0, 0), logprobs=logprobs)


# Stop strings ---------------------------------------------------------------------------
class StopText:
    """The text a client sees: generation stops after the token that completes a stop
    string, and the answer ends before it (as llama-cpp-python trims it). While
    streaming, a tail that could still become a stop string is held back."""

    def __init__(self, stop: list[str]):
        self.stop = stop
        self.text = ""
        self.sent = 0           # characters of `text` already handed out

    def push(self, piece: str) -> str:
        self.text += piece
        end = self._cut()
        if end is None:         # no stop yet: hold back a tail that is a stop's beginning
            end = len(self.text) - self._partial()
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    def finish(self) -> str:
        end = self._cut()
        end = len(self.text) if end is None else end
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    @property
    def final(self) -> str:
        end = self._cut()
        return self.text if end is None else self.text[:end]

    def _cut(self) -> int | None:
        found = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _partial(self) -> int:
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:n]):
                    best = n
                    break
        return best


# A run as the API sees it ---------------------------------------------------------------
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


class RunAnswer:
    """Accumulates one run's engine events into what the API returns."""

    def __init__(self, request: ApiRequest, run_id: str, model_id: str, moe_layers: list[int]):
        self.request = request
        self.run_id = run_id
        self.model = request.model or model_id
        self.moe_layers = moe_layers
        self.id = ("chatcmpl-" if request.chat else "cmpl-") + str(uuid.uuid4())
        self.created = int(time.time())
        self.text = StopText(request.settings.stop)
        self._ids: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self.n_prompt = 0
        self.finish: Finished | None = None
        self.permalink: str | None = None
        self.logprobs: list[dict] = []     # per generated token: {token, bytes, logprob, top: [(text, bytes, lp)]}
        self._sent_logprobs = 0
        self._prediction = None            # (ids, probs) of the candidates for the next token
        self._offset = len(request.prompt) if isinstance(request.prompt, str) else 0

    def add(self, ev, msg: dict, pieces: dict | None = None) -> str:
        """Take one event; returns the text it adds to the answer (may be "").
        `pieces`: token id -> bytes for the token and its candidates (logprobs only)."""
        if isinstance(ev, PromptRouted):
            self.n_prompt = len(ev.tokens)
            self._ids.append(ev.routing.expert_ids)
            self._weights.append(ev.routing.weights)
            self._predict(ev.routing)
            return ""
        if isinstance(ev, TokenRouted):
            self._ids.append(ev.routing.expert_ids)
            self._weights.append(ev.routing.weights)
            if self.request.logprobs is not None:
                self._add_logprob(ev.token.id, pieces or {})
            self._predict(ev.routing)
            return self.text.push(ev.token.text)
        if isinstance(ev, Finished):
            self.finish = ev
            self.permalink = msg.get("permalink")
            return self.text.finish()
        return ""

    def _predict(self, routing) -> None:
        if routing.candidate_ids is not None:
            self._prediction = (routing.candidate_ids[-1], routing.candidate_probs[-1])

    def _add_logprob(self, token: int, pieces: dict) -> None:
        ids, probs = self._prediction if self._prediction is not None else (np.zeros(0, np.int32), np.zeros(0))
        where = np.flatnonzero(ids == token)
        logprob = float(np.log(np.float64(probs[where[0]]))) if where.size else None

        def text(b: bytes) -> str:
            return b.decode("utf-8", "ignore")      # llama-cpp-python's token strings

        raw = pieces.get(token, b"")
        top = [(text(pieces.get(int(i), b"")), pieces.get(int(i), b""), float(np.log(np.float64(p))))
               for i, p in zip(ids[: self.request.logprobs], probs[: self.request.logprobs])]
        self.logprobs.append({"token": text(raw), "bytes": raw, "logprob": logprob, "top": top,
                              "offset": self._offset})
        self._offset += len(text(raw))

    def _logprobs(self, entries: list[dict]):
        if self.request.logprobs is None:
            return None
        if self.request.chat:
            return {"content": [{"token": e["token"], "logprob": e["logprob"], "bytes": list(e["bytes"]),
                                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(b)} for t, b, lp in e["top"]]}
                                for e in entries], "refusal": None}
        # llama-cpp-python: each top_logprobs dict holds the top n and the sampled token
        return {"tokens": [e["token"] for e in entries], "text_offset": [e["offset"] for e in entries],
                "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{**{t: lp for t, _, lp in e["top"]}, e["token"]: e["logprob"]} for e in entries]}

    def _new_logprobs(self):
        """Logprobs of the tokens not yet sent in a chunk (None when not asked)."""
        entries, self._sent_logprobs = self.logprobs[self._sent_logprobs:], len(self.logprobs)
        return self._logprobs(entries)

    @property
    def finish_reason(self) -> str:
        return FINISH_REASONS.get(self.finish.reason, "stop") if self.finish else "stop"

    def usage(self) -> dict:
        f = self.finish
        return {"prompt_tokens": f.n_prompt, "completion_tokens": f.n_generated,
                "total_tokens": f.n_prompt + f.n_generated}

    # Routing --------------------------------------------------------------------------
    def routed_rows(self) -> tuple[int, int]:
        """SGLang's range [routed_experts_start_len, seqlen - 1): seqlen counts the prompt
        and every generated token, the end-of-generation token included when the model
        emitted one; the last of them was never fed back through the model."""
        f = self.finish
        seqlen = f.n_prompt + f.n_generated + (1 if f.reason == "eos" else 0)
        return self.request.routed_experts_start_len, max(self.request.routed_experts_start_len, seqlen - 1)

    def extensions(self, base_url: str) -> dict:
        """`sgl_ext` and `moeviz` for the finished choice (return_routed_experts only)."""
        if not self.request.return_routed_experts or self.finish is None:
            return {}
        start, end = self.routed_rows()
        ids = np.concatenate(self._ids)[start:end]
        weights = np.concatenate(self._weights)[start:end]
        return {
            "sgl_ext": {"routed_experts": b64(ids, "<i4")},
            "moeviz": {"run": self.run_id, "permalink": self.permalink_url(base_url),
                       "moe_layers": list(self.moe_layers), "routed_experts_start_len": start,
                       "shape": list(ids.shape), "weights": b64(weights, "<f4")},
        }

    def permalink_url(self, base_url: str) -> str | None:
        return base_url.rstrip("/") + self.permalink if self.permalink else None

    # Responses ------------------------------------------------------------------------
    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(self, base_url: str) -> dict:
        ext = self.extensions(base_url)
        if self.request.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": self.text.final},
                      "logprobs": self._logprobs(self.logprobs), "finish_reason": self.finish_reason, **ext}
            return {**self._head("chat.completion"), "choices": [choice], "usage": self.usage()}
        choice = {"text": self.text.final, "index": 0, "logprobs": self._logprobs(self.logprobs),
                  "finish_reason": self.finish_reason, **ext}
        return {**self._head("text_completion"), "choices": [choice], "usage": self.usage()}

    def role_chunk(self) -> dict:
        """A chat stream's first chunk: the assistant's role (llama-cpp-python sends it first)."""
        return {**self._head("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}]}

    def text_chunk(self, text: str) -> dict:
        """A chunk of new text, with the logprobs of the tokens that came since the last one."""
        lp = self._new_logprobs()
        if self.request.chat:
            return {**self._head("chat.completion.chunk"),
                    "choices": [{"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": None}]}
        return {**self._head("text_completion"),
                "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": None}]}

    def final_chunk(self, base_url: str) -> dict:
        ext, lp = self.extensions(base_url), self._new_logprobs()
        if lp is not None and not (lp.get("content") if self.request.chat else lp["tokens"]):
            lp = None
        if self.request.chat:
            return {**self._head("chat.completion.chunk"),
                    "choices": [{"index": 0, "delta": {}, "logprobs": lp, "finish_reason": self.finish_reason, **ext}]}
        return {**self._head("text_completion"),
                "choices": [{"text": "", "index": 0, "logprobs": lp, "finish_reason": self.finish_reason, **ext}]}

    def usage_chunk(self) -> dict:
        obj = "chat.completion.chunk" if self.request.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": self.usage()}


def b64(a: np.ndarray, dtype: str) -> str:
    """Row-major little-endian bytes, base64: SGLang's wire form (int32 expert ids)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")
