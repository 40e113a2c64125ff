"""Stored responses of OpenAI's Responses API (moeviz/server/response_store.py,
routes/responses.py): `previous_response_id` continues what a `store: true` response
kept, `GET` / `DELETE /v1/responses/{id}` and `/input_items`, against a real `moeviz
serve` through the official openai SDK. Each continuation is checked against the prompt
its run really read (the stored trace's messages and prompt tokens); the tool-calling
loop runs on the scripted fixture (tests/test_clients.py), whose second script only
starts once a tool's result is in the context."""
import json
import urllib.parse

import pytest
from serverproc import ServerProcess, serve_in_thread
from test_api_key import KEY, bearer, call
from test_api_surfaces import ASK, SYSTEM, http, oai, server, stored  # noqa: F401 - fixtures
from test_chat_templates import NO_SDIST
from test_clients import ANSWER, CALL_ARGS, THINK, THINK2, USER, WEATHER, scripted  # noqa: F401 - fixture

from moeviz.server import response_store
from moeviz.server.response_store import ResponseStore

openai = pytest.importorskip("openai")

TOOL = {"type": "function", **WEATHER["function"]}        # the Responses API's function tool
NOT_FOUND = "previous_response_not_found"


def create(client, **kw):
    return client.responses.create(model="m", temperature=0, **{"max_output_tokens": 8, **kw})


def prompt_text(server, resp) -> str:
    trace = stored(server, resp.model_extra["moeviz"]["run"])
    return "".join(t["text"] for t in trace["tokens"] if t["prompt"])


def test_previous_response_id_continues_the_stored_conversation(oai, server):
    first = create(oai, instructions=SYSTEM, input=ASK)
    assert first.store is True and first.previous_response_id is None and first.output_text
    second = create(oai, instructions="Answer in C.", input="Now in C.", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    said = [{"role": "user", "content": ASK}, {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "Now in C."}]
    # the run read the first turn, and this turn's instructions, not the first's
    assert stored(server, second.model_extra["moeviz"]["run"])["prompt"] == [
        {"role": "system", "content": "Answer in C."}, *said]
    text = prompt_text(server, second)
    assert ASK in text and first.output_text.strip() in text and SYSTEM not in text
    # the same conversation sent whole reads the same prompt tokens and answers the same
    whole = create(oai, instructions="Answer in C.", input=said)
    assert (whole.usage.input_tokens, whole.output_text) == (second.usage.input_tokens, second.output_text)
    alone = create(oai, instructions="Answer in C.", input="Now in C.")
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    # a chain: the third turn reads both earlier ones, and no instructions at all
    third = create(oai, input="And in Rust?", previous_response_id=second.id)
    assert stored(server, third.model_extra["moeviz"]["run"])["prompt"] == [
        *said, {"role": "assistant", "content": second.output_text}, {"role": "user", "content": "And in Rust?"}]


def test_an_item_the_previous_response_holds_is_not_sent_twice(oai):
    # a client that sends the earlier output back along with previous_response_id would
    # have the model read it twice: refused, naming the item, as OpenAI refuses it
    first = create(oai, input=ASK)
    again = first.output[-1].model_dump(exclude_none=True)
    with pytest.raises(openai.BadRequestError) as e:
        create(oai, input=[again, {"role": "user", "content": "Now in C."}], previous_response_id=first.id)
    assert e.value.body["param"] == "input[0]" and e.value.body["message"].startswith(
        f"Duplicate item found with id {again['id']}")
    assert create(oai, input=[{"role": "user", "content": "Now in C."}], previous_response_id=first.id).output_text


def test_a_store_false_response_is_not_kept(oai):
    r = create(oai, input=ASK, store=False)
    assert r.store is False and r.output_text
    with pytest.raises(openai.NotFoundError) as e:
        oai.responses.retrieve(r.id)
    assert e.value.body == {"message": f"Response with id '{r.id}' not found.", "type": "not_found_error",
                            "param": "response_id", "code": None}
    with pytest.raises(openai.BadRequestError) as e:
        create(oai, input="and then?", previous_response_id=r.id)
    assert e.value.status_code == 400 and e.value.body == {
        "message": f"Previous response with id '{r.id}' not found.", "type": "invalid_request_error",
        "param": "previous_response_id", "code": NOT_FOUND}


def test_retrieve_input_items_and_delete(oai, server):
    status, first, _ = http(server, "/v1/responses", {"model": "m", "input": ASK, "max_output_tokens": 6,
                                                      "temperature": 0})
    assert status == 200 and http(server, f"/v1/responses/{first['id']}")[1] == first    # exactly as answered
    second = create(oai, input="Now in C.", previous_response_id=first["id"])
    assert oai.responses.retrieve(second.id).model_dump() == second.model_dump()
    # input items: the stored conversation's (the first's input and output), then this input; paged by `after`
    items = list(oai.responses.input_items.list(second.id, order="asc", limit=1))
    assert [(i.type, i.role, i.content[0].text) for i in items] == [
        ("message", "user", ASK), ("message", "assistant", first["output"][0]["content"][0]["text"]),
        ("message", "user", "Now in C.")]
    assert items[1].id == first["output"][0]["id"] and len({i.id for i in items}) == 3
    page = oai.responses.input_items.list(second.id, limit=2)         # newest first by default
    assert [i.id for i in page.data] == [items[2].id, items[1].id] and page.has_more
    assert page.first_id == items[2].id and page.last_id == items[1].id
    for query in ("limit=0", "limit=101", "limit=x", "order=up", "after=msg_nope"):
        status, body, _ = http(server, f"/v1/responses/{second.id}/input_items?{query}")
        assert status == 400 and body["error"]["param"] == query.split("=")[0]
    # delete: OpenAI's deletion object, then the id is gone; what continued it keeps the whole chain
    assert oai.responses.delete(first["id"]) is None
    for path in (f"/v1/responses/{first['id']}", f"/v1/responses/{first['id']}/input_items"):
        assert http(server, path)[0] == 404
    assert http(server, f"/v1/responses/{first['id']}", method="DELETE")[0] == 404
    third = create(oai, input="And in Rust?", previous_response_id=second.id)
    assert stored(server, third.model_extra["moeviz"]["run"])["prompt"][0] == {"role": "user", "content": ASK}
    assert http(server, f"/v1/responses/{second.id}", method="DELETE")[1] == {
        "id": second.id, "object": "response", "deleted": True}
    with pytest.raises(openai.BadRequestError) as e:
        create(oai, input="x", previous_response_id=second.id)
    assert e.value.body["code"] == NOT_FOUND


def sse_events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_a_streamed_response_is_stored_when_complete(server, oai):
    first = create(oai, input=ASK)
    status, raw, _ = call(server, "/v1/responses", {"model": "m", "input": "Now in C.", "stream": True,
                                                    "max_output_tokens": 6, "temperature": 0,
                                                    "previous_response_id": first.id})
    events = sse_events(raw)
    assert status == 200 and events[-1]["type"] == "response.completed"
    done = events[-1]["response"]
    assert done["previous_response_id"] == first.id and done["store"] is True
    assert http(server, f"/v1/responses/{done['id']}")[1] == done
    # the stream read the first turn, as the same request without streaming does
    again = create(oai, input="Now in C.", max_output_tokens=6, previous_response_id=first.id)
    assert (done["usage"]["input_tokens"], done["output"]) == (again.usage.input_tokens, [
        {**o, "id": d["id"]} for o, d in zip(again.model_dump(exclude_none=True)["output"], done["output"])])
    status, raw, _ = call(server, "/v1/responses", {"model": "m", "input": ASK, "stream": True, "store": False,
                                                    "max_output_tokens": 3})
    gone = sse_events(raw)[-1]["response"]
    assert gone["store"] is False and http(server, f"/v1/responses/{gone['id']}")[0] == 404


@NO_SDIST
def test_a_function_call_loop_through_previous_response_id(scripted):
    """call -> only the tool's output sent, with previous_response_id -> the answer; the
    first turn streamed or not."""
    with openai.OpenAI(base_url=scripted.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        plain = c.responses.create(model="m", input=USER["content"], tools=[TOOL], temperature=0)
        with c.responses.stream(model="m", input=USER["content"], tools=[TOOL], temperature=0) as s:
            streamed = s.get_final_response()
        for first in (plain, streamed):
            assert [o.type for o in first.output] == ["reasoning", "function_call"]
            assert first.output[0].content[0].text == THINK
            call_ = first.output[1]
            assert call_.name == "get_weather" and json.loads(call_.arguments) == CALL_ARGS
            answer = c.responses.create(model="m", tools=[TOOL], temperature=0, previous_response_id=first.id,
                                        input=[{"type": "function_call_output", "call_id": call_.call_id,
                                                "output": "Paris: 18 degrees, sunny"}])
            assert answer.output_text == ANSWER and answer.output[0].content[0].text == THINK2
            # the run read the question, the reasoning and the call (stored), and the result (sent)
            prompt = stored(scripted, answer.model_extra["moeviz"]["run"])["prompt"]
            assert [m["role"] for m in prompt] == ["user", "assistant", "tool"] and prompt[0] == USER
            [tc] = prompt[1]["tool_calls"]
            assert prompt[1]["reasoning_content"] == THINK and tc["id"] == call_.call_id
            assert (tc["function"]["name"], tc["function"]["arguments"]) == ("get_weather", CALL_ARGS)
            assert prompt[2] == {"role": "tool", "tool_call_id": call_.call_id, "content": "Paris: 18 degrees, sunny"}
            # and the items of the conversation are listed as they were stored
            kinds = [i.type for i in c.responses.input_items.list(answer.id, order="asc")]
            assert kinds == ["message", "reasoning", "function_call", "function_call_output"]


def test_the_api_key_guards_the_stored_responses(tmp_path):
    with ServerProcess("--api-key", KEY, "--data-dir", tmp_path) as s:
        with openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0, timeout=120) as c:
            r = create(c, input=ASK)
        unknown = "resp_" + "0" * 32
        routes = [("GET", f"/v1/responses/{r.id}", None), ("GET", f"/v1/responses/{r.id}/input_items", None),
                  ("GET", f"/v1/responses/{unknown}", None), ("DELETE", f"/v1/responses/{unknown}", None),
                  ("DELETE", f"/v1/responses/{r.id}", None),
                  ("POST", "/v1/responses", {"model": "m", "input": "x", "max_output_tokens": 1,
                                             "previous_response_id": r.id})]
        for method, path, body in routes:
            for headers in ({}, bearer("wrong"), {"x-api-key": "wrong"}):
                status, raw, _ = call(s, path, body, headers=headers, method=method)
                assert (status, json.loads(raw)["error"]["message"]) == (401, "Invalid API Key"), (method, path)
        assert [call(s, path, body, headers=bearer(KEY), method=method)[0] for method, path, body in routes] == [
            200, 200, 404, 404, 200, 400]     # the last: r was deleted just before


def test_eviction_at_the_bound(monkeypatch, tmp_path):
    """The oldest response goes once the count is over the bound (in-process: the bound
    set small); an evicted id is a clean not-found, a kept one still continues."""
    from moeviz.demo import default_model_path
    from moeviz.engine import Engine
    from moeviz.server import ServerSettings, create_app

    monkeypatch.setattr(response_store, "MAX_RESPONSES", 2)
    engine = Engine(default_model_path(), n_ctx=1024)
    try:
        with serve_in_thread(create_app(engine, ServerSettings(data_dir=tmp_path))) as (url, _):
            with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
                ids = [create(c, input=f"{ASK} # {i}", max_output_tokens=2).id for i in range(3)]
                with pytest.raises(openai.NotFoundError):
                    c.responses.retrieve(ids[0])
                with pytest.raises(openai.BadRequestError) as e:
                    create(c, input="x", previous_response_id=ids[0])
                assert e.value.body["message"] == f"Previous response with id '{ids[0]}' not found."
                assert [c.responses.retrieve(i).id for i in ids[1:]] == ids[1:]
                later = create(c, input="x", max_output_tokens=2, previous_response_id=ids[2])
                assert later.previous_response_id == ids[2]
                with pytest.raises(openai.NotFoundError):      # the continuation evicted ids[1]
                    c.responses.retrieve(ids[1])
    finally:
        engine.close()


def _response(i: int, text: str) -> dict:
    return {"id": f"resp_{i}", "output": [{"id": f"msg_{i}", "type": "message", "role": "assistant",
                                           "content": [{"type": "output_text", "text": text}]}]}


def test_the_store_keeps_a_count_and_a_byte_budget():
    one = ResponseStore(max_responses=100, max_bytes=10 ** 6)
    one.put(_response(0, "x" * 100), [{"role": "user", "content": "hi"}])
    size = one.nbytes
    assert size > 100 and len(one) == 1
    store = ResponseStore(max_responses=3, max_bytes=2 * size + size // 2)     # room for two such entries
    for i in range(3):
        assert store.put(_response(i, "x" * 100), [{"role": "user", "content": "hi"}])
    assert len(store) == 2 and store.nbytes == 2 * size            # resp_0 evicted by bytes
    with pytest.raises(response_store.ResponseNotFound):
        store.response("resp_0")
    # an entry over the whole budget is not kept, and evicts nothing
    assert not store.put(_response(9, "x" * 10 * size), []) and len(store) == 2
    # by count, oldest first; a newer entry keeps its whole chain when its ancestor goes
    store = ResponseStore(max_responses=2, max_bytes=10 ** 6)
    store.put(_response(1, "one"), [{"type": "message", "role": "user",
                                     "content": [{"type": "input_text", "text": "a"}]}])
    chain = store.conversation("resp_1")
    assert [i["id"].split("_")[0] for i in chain] == ["msg", "msg"] and chain[1]["id"] == "msg_1"
    store.put(_response(2, "two"), chain + [{"type": "function_call_output", "call_id": "c", "output": "o"}])
    store.put(_response(3, "three"), [])
    assert len(store) == 2 and store.delete("resp_3") == {"id": "resp_3", "object": "response", "deleted": True}
    with pytest.raises(response_store.PreviousResponseNotFound):
        store.conversation("resp_1")
    texts = [i.get("content", [{}])[0].get("text") for i in store.conversation("resp_2")]
    assert texts == ["a", "one", None, "two"] and store.conversation("resp_2")[2]["id"].startswith("fco_")
    assert store.nbytes == len(json.dumps({"response": store.response("resp_2"),
                                           "input": store.input_items("resp_2")},
                                          separators=(",", ":")).encode())


HOSTILE = ["x" * 10_000, "resp_<script>", "résp_1", "a b", "'; DROP TABLE", "resp_1\n", "%00", "..", "🙂" * 50]


def test_bad_ids_are_refused_in_one_line(server, oai):
    for bad in HOSTILE:
        quoted = urllib.parse.quote(bad, safe="")
        for method, path in (("GET", f"/v1/responses/{quoted}"), ("DELETE", f"/v1/responses/{quoted}"),
                             ("GET", f"/v1/responses/{quoted}/input_items")):
            status, body, _ = http(server, path, method=method)
            assert status == 400 and body["error"]["param"] == "response_id", (bad, path)
            assert "\n" not in body["error"]["message"] and len(body["error"]["message"]) < 200
        with pytest.raises(openai.BadRequestError) as e:
            create(oai, input="x", previous_response_id=bad)
        assert e.value.body["param"] == "previous_response_id" and len(e.value.body["message"]) < 200
        assert "\n" not in e.value.body["message"]
    for value in (5, ["resp_1"], {"id": "resp_1"}):
        status, body, _ = http(server, "/v1/responses", {"model": "m", "input": "x", "previous_response_id": value})
        assert (status, body["error"]["message"]) == (400, "'previous_response_id' must be a string")
    for field, value in (("store", "yes"), ("conversation", "conv_1")):
        status, body, _ = http(server, "/v1/responses", {"model": "m", "input": "x", field: value})
        assert status == 400 and body["error"]["param"] == field
    r = create(oai, input=ASK, max_output_tokens=2)
    assert http(server, f"/v1/responses/{r.id}?stream=true")[0] == 400
    assert http(server, f"/v1/responses/{r.id}/more")[0] == 404           # no such endpoint, still one line
