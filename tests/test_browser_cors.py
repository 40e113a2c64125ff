"""A chat UI that runs in the browser, served from its own origin, calls `moeviz serve`'s API
with the browser's own fetch (CORS, issue 23): with `--allowed-origins` naming its origin it
chats, streams, sends the API key and reads the run's id, and the run is listed live with
its routing stored; without it, or from another origin, Chromium blocks the call."""
import json
import urllib.request

import pytest
from browser import browser, pytestmark  # noqa: F401
from serverproc import ServerProcess, static_server

KEY = "sk-cors-test"
CHAT_UI = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>a chat UI</title></head><body>
<script>
// What browser-only chat UIs do: POST the conversation, read JSON or the SSE stream.
window.chat = async (base, key, stream) => {
  const headers = {"Content-Type": "application/json"};
  if (key) headers.Authorization = "Bearer " + key;
  const r = await fetch(base + "/v1/chat/completions", {method: "POST", headers, body: JSON.stringify(
    {model: "demo", messages: [{role: "user", content: "Write a haiku."}], max_tokens: 8, temperature: 0, stream})});
  const run = r.headers.get("X-Moeviz-Run");
  if (!r.ok) return {status: r.status, error: (await r.json()).error};
  if (!stream) { const j = await r.json(); return {status: r.status, run, text: j.choices[0].message.content}; }
  const reader = r.body.getReader(), dec = new TextDecoder();
  let raw = "", text = "";
  for (;;) { const {done, value} = await reader.read(); if (done) break; raw += dec.decode(value, {stream: true}); }
  for (const line of raw.split("\\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const c = JSON.parse(line.slice(6));
    if (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) text += c.choices[0].delta.content;
  }
  return {status: r.status, run, text};
};
window.tryChat = async (base, key) => { try { return await window.chat(base, key, false); } catch (e) { return {blocked: String(e)}; } };
// A Responses-API UI: answer, then delete the stored response (DELETE needs its own preflight).
window.respondAndDelete = async (base, key) => {
  const auth = {Authorization: "Bearer " + key};
  try {
    const r = await fetch(base + "/v1/responses", {method: "POST", headers: {...auth, "Content-Type": "application/json"},
      body: JSON.stringify({model: "demo", input: "Hi", max_output_tokens: 4, temperature: 0})});
    const id = (await r.json()).id;
    const d = await fetch(base + "/v1/responses/" + id, {method: "DELETE", headers: auth});
    const gone = await fetch(base + "/v1/responses/" + id, {headers: auth});
    return {status: r.status, deleted: (await d.json()).deleted, after: gone.status};
  } catch (e) { return {blocked: String(e)}; }
};
</script></body></html>"""


@pytest.fixture(scope="module")
def chat_ui(tmp_path_factory):
    site = tmp_path_factory.mktemp("chat-ui")
    (site / "index.html").write_text(CHAT_UI)
    with static_server(site) as url:
        yield url


def get_json(url):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_a_browser_chat_ui_on_an_allowed_origin_chats_and_its_runs_are_moeviz_runs(browser, chat_ui, tmp_path):
    origin = chat_ui.rstrip("/")
    with ServerProcess("--allowed-origins", origin, "--api-key", KEY, "--n-ctx", "512",
                       "--data-dir", tmp_path / "runs") as s:
        page = browser.new_page()
        try:
            page.goto(chat_ui)
            plain = page.evaluate("([b, k]) => chat(b, k, false)", [s.url, KEY])
            streamed = page.evaluate("([b, k]) => chat(b, k, true)", [s.url, KEY])
            no_key = page.evaluate("([b]) => tryChat(b, null)", [s.url])
            deleted = page.evaluate("([b, k]) => respondAndDelete(b, k)", [s.url, KEY])
        finally:
            page.close()
        assert plain["status"] == 200 and plain["run"] and isinstance(plain["text"], str) and plain["text"]
        assert streamed["status"] == 200 and streamed["text"] == plain["text"]     # greedy: the same answer
        # the key still guards it: the browser may read the refusal (so a UI can say so), not a run
        assert no_key.get("status") == 401 and "API Key" in json.dumps(no_key["error"]), no_key
        assert deleted == {"status": 200, "deleted": True, "after": 404}, deleted
        live = {r["run"]: r for r in get_json(s.url + "/api/live")["runs"]}
        for run in (plain["run"], streamed["run"]):
            assert live[run]["source"] == "api" and live[run]["status"] == "done"
            trace = get_json(f"{s.url}/api/runs/{run}")
            n = len(trace["tokens"])
            assert n > 0 and len(trace["routing"]["expert_ids"]) == n                  # routing for every token


@pytest.mark.parametrize("allowed", [None, "http://localhost:5173"])
def test_the_browser_blocks_a_chat_ui_from_an_origin_not_given(browser, chat_ui, tmp_path, allowed):
    args = ["--allowed-origins", allowed] if allowed else []
    with ServerProcess(*args, "--n-ctx", "512", "--data-dir", tmp_path / "runs") as s:
        page = browser.new_page()
        try:
            page.goto(chat_ui)
            got = page.evaluate("([b]) => tryChat(b, null)", [s.url])
        finally:
            page.close()
    assert "blocked" in got and "Failed to fetch" in got["blocked"], got
