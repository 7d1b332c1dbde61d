"""With --auth-tokens the console shows nothing until it has a token, keeps the token in the tab's
session storage only, and shows only the models the token may call, in the list and in the figures."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from lstmserve.client import Client
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer
from .conftest import screenshot, watching
from .console_page import open_console

ADMIN, DIGITS_ONLY = "admin-token-0123456789", "digits-token-0123456789"


@pytest.fixture(scope="module")
def secured(console_repository, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("console-auth") / "tokens"
    tokens.write_text(f"{ADMIN}\n{DIGITS_ONLY} {DIGITS}\n")
    server = InProcessServer(Settings(repository=str(console_repository), auth_tokens=str(tokens))).start()
    yield server
    server.stop()


@pytest.fixture
def tab(browser, secured):
    with watching(browser, secured.http_url) as watched:
        yield watched


def shown_text(page) -> str:
    """What the page shows, and what its console holds hidden: no model may be in either."""
    return page.locator("body").inner_text() + page.locator("main").inner_html()


def test_nothing_is_shown_without_a_token_and_only_its_models_with_one(tab, secured):
    page = tab.page
    page.goto(secured.http_url + "/")
    expect(page.get_by_label("Bearer token")).to_be_focused()
    expect(page.locator("#console")).to_be_hidden()
    fingerprints = []
    with Client(secured.address, token=ADMIN) as admin:
        fingerprints = [info.fingerprint for info in admin.models()]
        admin.infer(CHARS, np.zeros((1, 2, 5), np.float32))  # traffic the digits token must not see
        admin.infer(DIGITS, np.zeros((1, 2, 8), np.float32))  # and traffic it must see
        digits_fingerprint = admin.model(DIGITS).fingerprint
    for secret in [CHARS, DIGITS, *fingerprints]:
        assert secret not in shown_text(page)
    screenshot(page, "token", page.locator("#token-form"))

    tab.refusals.add(401)  # a wrong token is refused by the server, and the browser logs it
    page.get_by_label("Bearer token").fill("not-a-token-at-all-0000")
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-message")).to_contain_text("The token was not taken")
    assert CHARS not in shown_text(page) and DIGITS not in shown_text(page)

    page.get_by_label("Bearer token").fill(DIGITS_ONLY)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("table.models tbody tr")).to_have_count(1)
    expect(page.locator('table.models tr[data-model="digits:1"]')).to_contain_text(digits_fingerprint)
    expect(page.locator('table.figures tr[data-model="digits:1"]')).to_be_visible()  # figures were read
    assert CHARS not in shown_text(page)

    # The tab's session storage holds the token; nothing else does, and another tab does not have it.
    stored = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]
    assert page.evaluate("() => sessionStorage.getItem('lstmserve.token')") == DIGITS_ONLY
    other = tab.context.new_page()
    other.goto(secured.http_url + "/")
    expect(other.get_by_label("Bearer token")).to_be_visible()
    expect(other.locator("#console")).to_be_hidden()

    page.get_by_role("button", name="Forget token").click()
    expect(page.get_by_label("Bearer token")).to_be_visible()
    assert (
        DIGITS not in page.locator("main").inner_html() and page.evaluate("() => sessionStorage.length") == 0
    )


def test_a_token_for_every_model_shows_them_all_and_reloads_keep_it(tab, secured):
    page = tab.page
    page.goto(secured.http_url + "/")
    page.get_by_label("Bearer token").fill(ADMIN)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("table.models tbody tr")).to_have_count(3)
    page.reload()  # the same tab: its session storage still has the token
    open_console(page, secured.http_url)
    expect(page.locator("table.models tbody tr")).to_have_count(3)
