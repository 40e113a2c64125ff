"""The Responses API's stored responses: what `store: true` (OpenAI's default) keeps, so
that `previous_response_id` can continue a conversation and `GET` / `DELETE
/v1/responses/{id}` (routes/responses.py) can read and remove it.

Each entry is one response: the response object as it was answered, and the
conversation's input items as that request resolved them (its own previous_response_id
chain's items first, then its `input`; never its `instructions`, which OpenAI does not
carry over). `conversation(id)` is what a later request prepends to its input: those
input items, then the response's output items. An entry holds its whole chain, so
evicting an older response never breaks a newer one that continued it.

In memory, per server process, bounded by a count and a byte budget (the entries' JSON):
the oldest entries go first. A response larger than the whole budget is not kept. Entries
are held as JSON bytes, so what is read back is a copy, never the answer's own objects.
"""
from __future__ import annotations

import collections
import json
import re
import threading
import uuid

from .openai_shapes import ApiRequestError

MAX_RESPONSES = 1000              # entries kept at most (the oldest are evicted first)
MAX_BYTES = 64 * 1024 * 1024      # JSON bytes kept at most, every entry together
MAX_ID_CHARS = 128
ID = re.compile(r"[A-Za-z0-9_-]+")
ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


class ResponseNotFound(ApiRequestError):
    status = 404


class PreviousResponseNotFound(ApiRequestError):
    """A previous_response_id that is not stored: OpenAI's 400, code previous_response_not_found."""

    code = "previous_response_not_found"


def check_id(value, param: str) -> str:
    """A response id as a client sent it: a string of letters, digits, '_' and '-', at most
    MAX_ID_CHARS long; anything else is a 400 naming `param` (the value cut short)."""
    if not isinstance(value, str):
        raise ApiRequestError(f"'{param}' must be a string", param)
    if len(value) > MAX_ID_CHARS or not ID.fullmatch(value):
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise ApiRequestError(f"Invalid '{param}': {shown!r}. Expected an ID of letters, digits, underscores or "
                              f"dashes, at most {MAX_ID_CHARS} characters.", param)
    return value


class ResponseStore:
    def __init__(self, max_responses: int | None = None, max_bytes: int | None = None):
        self.max_responses = MAX_RESPONSES if max_responses is None else max_responses
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()      # sync routes run on the threadpool, async ones on the loop

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, response: dict, input_items: list[dict]) -> bool:
        """Keep `response` (its `id`) with the conversation's input items; evict the oldest
        entries beyond the bounds. False when the entry alone is over the byte budget. Input
        items without an `id` get one (input_items lists them by id)."""
        input_items = [item if item.get("id") else {**item, "id": _item_id(item)} for item in input_items]
        raw = json.dumps({"response": response, "input": input_items}, ensure_ascii=False,
                         separators=(",", ":")).encode("utf-8")
        if len(raw) > self.max_bytes or self.max_responses < 1:
            return False
        with self._lock:
            self._drop(response["id"])
            self._entries[response["id"]] = raw
            self._bytes += len(raw)
            while len(self._entries) > self.max_responses or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def response(self, response_id: str) -> dict:
        return self._entry(response_id)["response"]

    def input_items(self, response_id: str) -> list[dict]:
        return self._entry(response_id)["input"]

    def conversation(self, previous_id: str) -> list[dict]:
        """The items a request with `previous_response_id` continues from: the stored
        response's input items, then its output items."""
        check_id(previous_id, "previous_response_id")
        try:
            entry = self._entry(previous_id)
        except ResponseNotFound:
            raise PreviousResponseNotFound(f"Previous response with id '{previous_id}' not found.",
                                           "previous_response_id") from None
        return entry["input"] + entry["response"]["output"]

    def delete(self, response_id: str) -> dict:
        """OpenAI's deletion object; an unknown id is a 404."""
        check_id(response_id, "response_id")
        with self._lock:
            if response_id not in self._entries:
                raise self._not_found(response_id)
            self._drop(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    def _entry(self, response_id: str) -> dict:
        check_id(response_id, "response_id")
        with self._lock:
            raw = self._entries.get(response_id)
        if raw is None:
            raise self._not_found(response_id)
        return json.loads(raw)

    @staticmethod
    def _not_found(response_id: str) -> ResponseNotFound:
        return ResponseNotFound(f"Response with id '{response_id}' not found.", "response_id")

    def _drop(self, response_id: str) -> None:
        raw = self._entries.pop(response_id, None)
        if raw is not None:
            self._bytes -= len(raw)


def _item_id(item: dict) -> str:
    return f"{ITEM_PREFIX.get(item.get('type', 'message'), 'item')}_{uuid.uuid4().hex}"
