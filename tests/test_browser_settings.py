"""The page's Generate inputs take their defaults and ranges from the server's one table
of run settings (GET /api/settings, moeviz/settings.py), not from index.html, and what
it sends is what the server records."""
from browser import Page, browser, pytestmark, server  # noqa: F401

from moeviz.settings import BY_NAME


def test_inputs_come_from_the_settings_table(browser, server):  # noqa: F811
    pg = Page(browser, server.url)
    p = pg.page
    p.wait_for_function("document.querySelectorAll('#prompt-select option').length > 1")
    p.wait_for_function("document.getElementById('temperature').value !== ''")
    shown = pg.js("""['max-tokens', 'temperature', 'seed'].map(id => {
        const e = document.getElementById(id); return [e.value, e.min, e.max]; })""")
    t = BY_NAME["temperature"]
    assert shown[0][0] == str(BY_NAME["max_tokens"].default) and shown[0][1] == "0"
    assert float(shown[1][0]) == t.default and (float(shown[1][1]), float(shown[1][2])) == (t.lo, t.hi)
    assert shown[2][0] == "0" and shown[2][2] == str(BY_NAME["seed"].hi)
    assert pg.js("document.getElementById('probs').checked") is BY_NAME["probs"].default
    # sent as shown: the run's recorded settings are the table's defaults
    p.select_option("#prompt-select", "")
    p.fill("#prompt-text", "def f(x):")
    p.fill("#max-tokens", "3")
    p.wait_for_function("!document.getElementById('generate').disabled")
    p.click("#generate")
    p.wait_for_function("moeviz.done && moeviz.tokens > 0", timeout=30_000)
    sent = [m for m in pg.sent if m.get("type") == "generate"][-1]
    assert (sent["temperature"], sent["seed"], sent["max_tokens"]) == (t.default, 0, 3)
    assert pg.errors == []
