"""The page on a `serve --api-key` server, in real headless Chromium: it asks for the key
once (web/js/apikey.js), refuses a wrong one, keeps the right one in the browser (a
reload asks nothing), and a permalink opened without it asks, then shows the run."""
import json
import urllib.request

import pytest
from browser import browser, pytestmark  # noqa: F401
from serverproc import ServerProcess

KEY = "sk-browser-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess("--api-key", KEY, "--data-dir", tmp_path_factory.mktemp("runs")) as s:
        req = urllib.request.Request(s.url + "/v1/completions", method="POST",
                                     data=json.dumps({"prompt": "def lighthouse(x):", "max_tokens": 3}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            s.run_id = r.headers["X-Moeviz-Run"]
        yield s


def submit(page, key):
    page.wait_for_selector("dialog.apikey #apikey-input", state="visible")
    page.fill("#apikey-input", key)
    page.click("#apikey-submit")


def test_the_page_asks_for_the_key_once_and_keeps_it(server, browser):
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    submit(page, "wrong")
    page.wait_for_selector("#apikey-error:has-text('not accepted')")
    submit(page, KEY)
    # the socket opens: the live list holds the API run made with the key
    page.wait_for_selector("#live-runs li", timeout=30_000)
    assert page.locator("dialog.apikey").count() == 0
    assert page.evaluate("localStorage.getItem('moeviz.apiKey')") == KEY
    page.reload()
    page.wait_for_selector("#live-runs li", timeout=30_000)
    assert page.locator("dialog.apikey").count() == 0          # kept: not asked again
    assert errors == []
    context.close()


def test_a_permalink_without_the_key_asks_then_shows_the_run(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/r/{server.run_id}")
    assert "API key needed" in page.inner_text("main")
    assert "lighthouse" not in page.content()
    submit(page, KEY)
    page.wait_for_function("window.moeviz !== undefined && window.moeviz.mode === 'replay'", timeout=30_000)
    page.wait_for_selector("#replay-prompt:has-text('lighthouse')", timeout=30_000)
    context.close()
