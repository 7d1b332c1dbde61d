"""Over TLS the console just works: the page, its files and its calls all go to its own https origin."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from lstmserve.server.settings import Settings

from ..servers import InProcessServer
from .conftest import watching
from .console_page import draw_row, held_out_digits, open_console, predicted

pytest.importorskip("cryptography", reason="pip install cryptography (the dev extra has it)")
from ..certs import Authority  # noqa: E402  (needs cryptography)


@pytest.fixture(scope="module")
def tls_server(console_repository, tmp_path_factory):
    authority = Authority(tmp_path_factory.mktemp("console-tls"))
    issued = authority.issue("localhost", server=True)
    settings = Settings(
        repository=str(console_repository), tls_cert=str(issued.cert), tls_key=str(issued.key)
    )
    server = InProcessServer(settings).start()
    yield server
    server.stop()


def test_the_console_over_https_lists_models_and_streams_a_digit(browser, tls_server):
    origin = f"https://localhost:{tls_server.http_port}"
    # The test CA is not in the browser's store; a real deployment's certificate would be.
    with watching(browser, origin, ignore_https_errors=True) as tab:
        page = open_console(tab.page, origin)
        assert page.evaluate("() => window.isSecureContext") is True
        ((image, _),) = held_out_digits(5)
        draw_row(page, 1, 0, image[0])
        expect(page.locator('[data-pad="1"] .prediction')).not_to_be_empty()
        assert predicted(page, 1) in "0123456789"
