"""The page's list of the server's runs (web/js/liveruns.js) in real headless Chromium:
an OpenAI API run appears while it is in flight, and clicking it shows it token by
token on the page, every view fed as by the page's own run."""
import threading

import pytest
from browser import Page, browser, pytestmark  # noqa: F401
from serverproc import ServerProcess

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--threads", "1", "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        yield s


TARGET = "Once upon a time there was a lighthouse"


def test_an_api_run_is_watchable_on_the_page_while_it_generates(server, browser):
    pg = Page(browser, server.url + "/")
    page, errors, received = pg.page, pg.errors, pg.received
    page.wait_for_selector("#live-runs")
    assert "No runs yet" in page.inner_text("#live-runs")
    # a person clicks the run as soon as it is listed (here: a watcher in the page, so the
    # click cannot come too late for a tiny, fast model)
    page.evaluate("""(target) => {
      const card = document.getElementById('live-runs');
      const tryClick = () => {
        for (const li of card.querySelectorAll('li[data-status=queued], li[data-status=running]')) {
          if (li.querySelector('.live-run-title').textContent === target && !window.__clicked) {
            window.__clicked = li.dataset.status; li.querySelector('button').click();
          }
        }
      };
      new MutationObserver(tryClick).observe(card, {childList: true, subtree: true});
    }""", TARGET)
    answers = {}
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120) as client:
        def ask(name, prompt, n):
            answers[name] = client.completions.create(model="demo", prompt=prompt, max_tokens=n, temperature=0)

        # the first run holds the worker, so the second is listed (queued) before it starts
        first = threading.Thread(target=ask, args=("first", "Once upon a time", 1000))
        first.start()
        page.wait_for_selector("#live-runs li[data-status=running]")
        second = threading.Thread(target=ask, args=("second", TARGET, 300))
        second.start()
        first.join(timeout=120)
        second.join(timeout=120)
    run = answers["second"]
    page.wait_for_function("window.moeviz.done && window.moeviz.status === 'done'", timeout=60_000)
    assert page.evaluate("window.__clicked") in ("queued", "running")
    n = run.usage.prompt_tokens + run.usage.completion_tokens
    assert page.evaluate("window.moeviz.tokens") == n
    assert page.evaluate("window.moeviz.source.kind") == "live"
    # the page got the run as its own: watching, start, prompt, tokens, done, with the stored routing
    kinds = [m["type"] for m in received if m["type"] not in ("runs",)]
    i = kinds.index("watching")
    assert kinds[i + 1: i + 3] == ["start", "prompt"] and kinds[-1] == "done"
    assert kinds[i + 3:-1] == ["token"] * run.usage.completion_tokens
    watched = [m for m in received if m["type"] in ("prompt", "token")][-(run.usage.completion_tokens + 1):]
    ids = watched[0]["expert_ids"] + [m["expert_ids"] for m in watched[1:]]
    run_id = next(m for m in received if m["type"] == "watching")["run"]
    with page.expect_response(f"**/api/runs/{run_id}") as resp:
        page.evaluate(f"fetch('/api/runs/{run_id}')")
    assert resp.value.json()["routing"]["expert_ids"] == ids
    # finished runs link to their permalinks; both API runs are listed, newest first
    page.wait_for_selector(f"#live-runs li[data-status=done] a[href='/r/{run_id}']")
    titles = page.eval_on_selector_all("#live-runs .live-run-title", "els => els.map(e => e.textContent)")
    assert titles[:2] == [TARGET, "Once upon a time"]
    assert "API · done" in page.inner_text("#live-runs")
    assert not errors
    page.close()
