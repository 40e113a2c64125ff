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

from ..engine import Finished, PromptRouted, SamplingSettings, TokenRouted
from ..engine.text import StopText
from ..errors import MoevizError, UserError
from .openai_tools import ChatOutput, chat_prompt_from_body
from ..llama.grammar import check_gbnf, json_schema_grammar
from ..settings import INT32_MAX, SAMPLING, from_message, with_defaults

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
    routed_experts_format: str = "sglang"  # where the routing goes: "sglang" (sglext + sgl_ext) or "vllm"
    routed_experts_start_len: int = 0
    logprobs: int | None = None            # None: none; else how many top tokens per generated token
    chat_plan: object = None               # openai_tools: the chat's template plan (tools, reasoning), set when queued
    n: int = 1                             # choices: one run each (seeds seed, seed + 1, ...)
    echo: bool = False                     # completions: the prompt leads the text
    max_tokens_given: bool = False         # False: to the end of the context (llama-server's n_predict -1)

    @property
    def candidates(self) -> int:
        """Next-token candidates the run records so that every generated token's logprob
        is among them: the sampler draws from the top_k most likely (or the top one)."""
        if self.logprobs is None:
            return 0
        return max(self.logprobs, 1 if self.settings.temperature == 0 else self.settings.top_k)

    def choice_settings(self, index: int) -> SamplingSettings:
        """The settings of choice `index` of n: its own seed, so that sampled choices differ
        (and each is reproducible from its trace)."""
        return dataclasses.replace(self.settings, seed=(self.settings.seed + index) % 2**32)


def clamp_to_context(req: ApiRequest, n_prompt: int, n_ctx_seq: int) -> None:
    """llama-server's limit: max_tokens absent, or beyond what the (per-slot) context has
    left after the prompt, becomes what is left; the run then ends with "length"."""
    left = max(0, n_ctx_seq - n_prompt)
    if not req.max_tokens_given or req.settings.max_tokens > left:
        req.settings.max_tokens = left


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


# Fields llama-cpp-python accepts that moeviz's sampler has no counterpart for: refused
# unless they hold their neutral value. Every sampler setting moeviz has is in moeviz/settings.py.
_NEUTRAL = {"mirostat_mode": 0, "mirostat": 0, "min_tokens": 0, "best_of": 1, "suffix": None}
_UNSUPPORTED = ("functions", "function_call")
MAX_N = 16


def response_format_grammar(fmt) -> str | None:
    """GBNF for OpenAI's `response_format`: None for text; any JSON object for
    json_object (llama-cpp-python: a `schema` inside it constrains it further);
    the schema's own grammar for json_schema (strict or not: a grammar always holds)."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise ApiRequestError("'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                              "{\"type\": \"json_schema\", \"json_schema\": {\"name\", \"schema\"}}", "response_format")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return json_schema_grammar(fmt.get("schema"))
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise ApiRequestError("'response_format.json_schema' must be an object with a 'schema' object",
                              "response_format")
    return json_schema_grammar(spec.get("schema") or {"type": "object"})


def _settings(body: dict, chat: bool, max_tokens_cap: int | None,
              defaults: dict | None = None) -> tuple[SamplingSettings, bool]:
    """The run's sampling settings from the request's fields (moeviz/settings.py: names
    and aliases, types, ranges, messages)."""
    if chat and body.get("max_tokens") is None and body.get("max_completion_tokens") is not None:
        body = {**body, "max_tokens": body["max_completion_tokens"]}    # the newer name, same setting
    body = {k: v for k, v in body.items() if k != "max_completion_tokens"}
    if isinstance(body.get("stop"), list):
        body["stop"] = [x for x in body["stop"] if x != ""]            # "" stops nothing: dropped, as llama-cpp-python
    elif body.get("stop") == "":
        body["stop"] = None
    if body.get("seed") is None and (defaults or {}).get("seed") is not None:
        body["seed"] = defaults["seed"]                                 # serve --seed
    if body.get("seed") in (None, -1):                                  # llama.cpp's -1: a random seed; the trace
        body["seed"] = secrets.randbits(32)                             # keeps it: the permalink's run reproduces
    given = with_defaults(from_message(body, [s.name for s in SAMPLING]), defaults)
    max_given = "max_tokens" in given                                   # by the client or serve --max-tokens
    fmt_grammar = response_format_grammar(body.get("response_format"))
    if fmt_grammar is not None:
        if given.get("grammar"):
            raise ApiRequestError("give 'grammar' or a JSON 'response_format', not both", "response_format")
        given["grammar"] = fmt_grammar
    if given.get("grammar"):
        check_gbnf(given["grammar"])
    if max_tokens_cap is not None:
        given.setdefault("max_tokens", max_tokens_cap)
        if given["max_tokens"] > max_tokens_cap:
            raise ApiRequestError(f"max_tokens {given['max_tokens']} is over this server's limit of {max_tokens_cap}",
                                  "max_tokens")
    else:
        given.setdefault("max_tokens", INT32_MAX)          # to the end of the context (clamp_to_context)
    return SamplingSettings(**given).validate(), max_given


ROUTING_FORMATS = ("sglang", "vllm")


def _routing_format(body: dict) -> str:
    v = body.get("routed_experts_format", "sglang")
    if v not in ROUTING_FORMATS:
        raise ApiRequestError(f"'routed_experts_format' must be one of {', '.join(ROUTING_FORMATS)}",
                              "routed_experts_format")
    return v


def parse_request(body, *, chat: bool, max_tokens_cap: int | None = None, defaults: dict | None = None) -> ApiRequest:
    """Validate a /v1/completions (chat=False) or /v1/chat/completions body.
    `max_tokens_cap`: a public server's limit (None: none, as llama-server); `defaults`:
    serve's run-setting flags, for the settings the body leaves out."""
    if not isinstance(body, dict):
        raise ApiRequestError("the request body must be a JSON object")
    if chat:      # messages, tools, tool_choice (openai_tools.py): a ChatPrompt the template renders whole
        prompt = chat_prompt_from_body(body)
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
            raise ApiRequestError(f"'{name}' is not supported by this server", name)
    for name in _UNSUPPORTED:
        if body.get(name):
            raise ApiRequestError(f"'{name}' is not supported by this server (use 'tools')", name)
    n = _integer(body, "n", 1, 1, MAX_N)
    echo = _bool(body, "echo")
    if echo and chat:
        raise ApiRequestError("'echo' applies to /v1/completions only", "echo")
    if chat:
        logprobs = _integer(body, "top_logprobs", 0, 0, MAX_LOGPROBS) if _bool(body, "logprobs") else None
        if logprobs is None and body.get("top_logprobs") is not None:
            raise ApiRequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    else:
        logprobs = _integer(body, "logprobs", None, 0, MAX_LOGPROBS)
    if echo and logprobs is not None:
        raise ApiRequestError("'echo' with 'logprobs' (the prompt's logprobs) is not supported", "echo")

    settings, max_given = _settings(body, chat, max_tokens_cap, defaults)
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
                      routed_experts_format=_routing_format(body),
                      routed_experts_start_len=_integer(body, "routed_experts_start_len", 0, 0), logprobs=logprobs,
                      n=n, echo=echo, max_tokens_given=max_given)


# Stop strings: engine/text.py StopText (incremental, held-back tail while streaming)


# A run as the API sees it ---------------------------------------------------------------
MODEL_NAME_ECHO_MAX = 256   # characters of a request's `model` echoed back; longer: the server's own id
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


class RunAnswer:
    """Accumulates one run's engine events into what the API returns."""

    def __init__(self, request: ApiRequest, run_id: str, model_id: str, moe_layers: list[int], index: int = 0):
        self.request = request
        self.index = index                 # the choice's index (n > 1: one run per choice)
        # a chat's output read for reasoning and tool calls (openai_tools.ChatOutput)
        self.output = ChatOutput(request.chat_plan) if request.chat_plan is not None else None
        self.run_id = run_id
        # the client's model name is echoed as OpenAI-compatible servers do, up to a length:
        # every chunk of a stream carries it (a 4 MB name made a 1,024-token stream 4.1 GB)
        self.model = request.model if request.model and len(request.model) <= MODEL_NAME_ECHO_MAX else model_id
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
            return self.echoed
        return self._add_later(ev, msg, pieces)

    @property
    def echoed(self) -> str:
        """The text `echo` puts before the answer: the prompt (completions only)."""
        return self.request.prompt if self.request.echo and isinstance(self.request.prompt, str) else ""

    def _add_later(self, ev, msg: dict, pieces: dict | None) -> str:
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
        reason = FINISH_REASONS.get(self.finish.reason, "stop") if self.finish else "stop"
        return self.output.finish_reason(reason) if self.output is not None else reason

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

    def _routed(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self._ids)[start:end], np.concatenate(self._weights)[start:end]

    @property
    def _vllm(self) -> bool:
        return self.request.routed_experts_format == "vllm"

    def extensions(self, base_url: str) -> dict:
        """The finished choice's routing (return_routed_experts only): SGLang's older
        per-choice `sgl_ext` (or vLLM's per-choice `routed_experts`: the generated tokens'
        rows as nested lists) and moeviz's `moeviz` (run, permalink, weights)."""
        if not self.request.return_routed_experts or self.finish is None:
            return {}
        start, end = self.routed_rows()
        if self._vllm:          # vLLM splits the prompt's rows (response level) from the generated ones
            start = max(start, self.finish.n_prompt)
            end = max(start, end)
        ids, weights = self._routed(start, end)
        own = {"run": self.run_id, "permalink": self.permalink_url(base_url), "moe_layers": list(self.moe_layers),
               "routed_experts_start_len": start, "shape": list(ids.shape), "weights": b64(weights, "<f4")}
        if self._vllm:
            return {"routed_experts": ids.tolist(), "moeviz": own}
        return {"sgl_ext": {"routed_experts": b64(ids, "<i4")}, "moeviz": own}

    def response_extensions(self) -> dict:
        """The response-level routing: current SGLang's `sglext.routed_experts` (base64
        int32, the same rows as the choice's sgl_ext), or vLLM's `prompt_routed_experts`
        (the prompt's rows as nested lists)."""
        if not self.request.return_routed_experts or self.finish is None:
            return {}
        if self._vllm:
            return {"prompt_routed_experts": self._routed(0, self.finish.n_prompt)[0].tolist()}
        return {"sglext": {"routed_experts": b64(self._routed(*self.routed_rows())[0], "<i4")}}

    def routing_chunk(self) -> dict | None:
        """Current SGLang's last streamed chunk before the usage one: `choices: []` and the
        response-level `sglext` (None unless asked, or in vLLM's placement)."""
        ext = self.response_extensions()
        if "sglext" not in ext:
            return None
        obj = "chat.completion.chunk" if self.request.chat else "text_completion"
        return {**self._head(obj), "choices": [], **ext}

    def permalink_url(self, base_url: str) -> str | None:
        return base_url.rstrip("/") + self.permalink if self.permalink else None

    # Responses ------------------------------------------------------------------------
    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(self, base_url: str) -> dict:
        ext = self.extensions(base_url)
        if self.request.chat:
            message = self._message()
            choice = {"index": self.index, "message": message,
                      "logprobs": self._logprobs(self.logprobs), "finish_reason": self.finish_reason, **ext}
            return {**self._head("chat.completion"), "choices": [choice], "usage": self.usage(),
                    **self.response_extensions()}
        choice = {"text": self.echoed + self.text.final, "index": self.index, "logprobs": self._logprobs(self.logprobs),
                  "finish_reason": self.finish_reason, **ext}
        return {**self._head("text_completion"), "choices": [choice], "usage": self.usage(),
                **self.response_extensions()}

    def role_chunk(self) -> dict:
        """A chat stream's first chunk: the assistant's role (llama-cpp-python sends it first)."""
        return {**self._head("chat.completion.chunk"),
                "choices": [{"index": self.index, "delta": {"role": "assistant"}, "logprobs": None,
                             "finish_reason": None}]}

    def _message(self) -> dict:
        if self.output is None:
            return {"role": "assistant", "content": self.text.final}
        if not self.output.finished:            # not streamed: the whole text read at once
            self.output.feed(self.text.final)
        return self.output.message()

    def text_chunk(self, text: str) -> dict | None:
        """A chunk of new text, with the logprobs of the tokens that came since the last one
        (None: the text is held back for now, e.g. a tool call's markup being read)."""
        delta = {"content": text}
        if self.output is not None:
            delta = self.output.feed(text)
            if delta is None and self.request.logprobs is None:
                return None
        lp = self._new_logprobs()
        if self.request.chat:
            return {**self._head("chat.completion.chunk"),
                    "choices": [{"index": self.index, "delta": delta or {}, "logprobs": lp, "finish_reason": None}]}
        return {**self._head("text_completion"),
                "choices": [{"text": text, "index": self.index, "logprobs": lp, "finish_reason": None}]}

    def final_chunk(self, base_url: str) -> dict:
        """The chunk with the finish reason (and the choice's routing; in vLLM's placement
        the prompt's rows too, at the chunk's top level)."""
        top = self.response_extensions() if self._vllm else {}
        return {**self._final_chunk(base_url), **top}

    def _final_chunk(self, base_url: str) -> dict:
        ext, lp = self.extensions(base_url), self._new_logprobs()
        if lp is not None and not (lp.get("content") if self.request.chat else lp["tokens"]):
            lp = None
        if self.request.chat:
            delta = (self.output.finish() if self.output is not None else None) or {}
            return {**self._head("chat.completion.chunk"),
                    "choices": [{"index": self.index, "delta": delta, "logprobs": lp, "finish_reason": self.finish_reason,
                                 **ext}]}
        return {**self._head("text_completion"),
                "choices": [{"text": "", "index": self.index, "logprobs": lp, "finish_reason": self.finish_reason,
                                 **ext}]}

    def usage_chunk(self) -> dict:
        obj = "chat.completion.chunk" if self.request.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": self.usage()}


def combined_response(answers: list[RunAnswer], base_url: str) -> dict:
    """One response for n > 1 choices (one finished RunAnswer per choice, in index
    order): every choice, the prompt counted once in the usage (OpenAI's)."""
    out = answers[0].response(base_url)
    out["choices"] = [a.response(base_url)["choices"][0] for a in answers]
    if "sglext" in out:         # SGLang: one routing per choice, as a list when n > 1
        out["sglext"] = {"routed_experts": [a.response_extensions()["sglext"]["routed_experts"] for a in answers]}
    completion = sum(a.finish.n_generated for a in answers)
    out["usage"] = {"prompt_tokens": answers[0].finish.n_prompt, "completion_tokens": completion,
                    "total_tokens": answers[0].finish.n_prompt + completion}
    return out


def b64(a: np.ndarray, dtype: str) -> str:
    """Row-major little-endian bytes, base64: SGLang's wire form (int32 expert ids)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")
