"""The loading page in real headless Chromium: "loading model n%" while a real llama.cpp
load is held in its progress callback, then the real page once the model is ready; and
a failed load's one-line error. The server is uvicorn over moeviz.server.loading in
this process (see test_loading.py for how the load is held)."""
import re
import threading

from browser import browser, pytestmark  # noqa: F401
from serverproc import serve_in_thread
from test_loading import Gate, loading_app, unknown_arch  # noqa: F401 - fixture


def open_page(browser, url):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url)
    return page, response, errors


def test_page_shows_the_load_then_becomes_the_real_page(browser, fixture_models, tmp_path):
    path = fixture_models["deepseek2"]
    gate = Gate(0.5)
    app, _events = loading_app(gate.engine(path), path, tmp_path)
    with serve_in_thread(app) as (url, _server):
        assert gate.reached.wait(60)
        page, response, errors = open_page(browser, url + "/")
        assert response.status == 503
        percent = int(100 * gate.held_at)
        # the first poll of /health keeps the same text: the load is held
        page.wait_for_timeout(600)
        assert page.locator("#status").inner_text() == f"loading model {percent}%"
        assert page.locator("#loading").get_attribute("data-state") == "loading"
        assert page.locator("#model").inner_text() == "deepseek2.gguf"
        assert re.match(r"width: \d+%", page.locator("#fill").get_attribute("style"))
        gate.release.set()
        page.wait_for_function("window.moeviz !== undefined", timeout=30_000)   # reloaded into the real page
        page.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
        assert page.locator("#loading").count() == 0
        assert page.locator("#model-name").inner_text() == app.app.state.engine.info.name
        assert errors == []
        page.close()


def test_page_shows_a_failed_load(browser, unknown_arch, tmp_path):  # noqa: F811
    started = threading.Event()

    def make(progress):
        started.wait(60)
        return Gate(0.0).engine(unknown_arch)(progress)

    app, events = loading_app(make, unknown_arch, tmp_path, linger_s=30)
    with serve_in_thread(app) as (url, _server):
        page, _response, errors = open_page(browser, url + "/")
        assert page.locator("#status").inner_text() == "loading model 0%"
        started.set()
        page.wait_for_function("document.getElementById('loading').dataset.state === 'error'", timeout=30_000)
        text = page.locator("#status").inner_text()
        assert text == f"the model failed to load: {events['failed'][0]}"
        assert "unknown model architecture: 'foomoe'" in text
        assert errors == []
        page.close()
