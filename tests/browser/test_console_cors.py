"""CORS in a real browser: a page of another origin cannot read this server's answers unless
--http-cors-origin names that origin; then that origin, and no other, can."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lstmserve.server.settings import Settings

from ..servers import InProcessServer


class AppPage(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>another app</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    """Another origin on this machine (a browser keeps public pages from loopback addresses anyway):
    localhost on a port of its own, where the servers are 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AppPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def servers(console_repository, app):
    closed = InProcessServer(Settings(repository=str(console_repository))).start()
    opened = InProcessServer(Settings(repository=str(console_repository), http_cors_origin=app)).start()
    yield closed, opened
    closed.stop()
    opened.stop()


def fetch_from(browser, origin: str, url: str) -> str:
    """What a script on `origin`'s page gets from fetch(url) with a JSON body: the answer, or the error."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{origin}/")
    try:
        return page.evaluate(
            """async (url) => {
                try {
                    const input = {name: "input", datatype: "FP32", shape: [1, 1, 8], data: Array(8).fill(0)};
                    const answer = await fetch(url, {method: "POST", body: JSON.stringify({inputs: [input]}),
                                                     headers: {"content-type": "application/json"}});
                    return `${answer.status} ${await answer.text()}`;
                } catch (error) { return `refused: ${error}`; }
            }""",
            url,
        )
    finally:
        context.close()


def test_another_origin_is_refused_by_default_and_allowed_when_named(browser, servers, app):
    closed, opened = servers
    path = "/v2/models/digits/infer"
    assert fetch_from(browser, app, closed.http_url + path).startswith("refused: TypeError")
    answer = fetch_from(browser, app, opened.http_url + path)
    assert answer.startswith('200 {"model_name":"digits"'), answer
    # One origin is named: the same page under another host name is another origin, still refused.
    assert fetch_from(browser, app.replace("localhost", "127.0.0.1"), opened.http_url + path).startswith(
        "refused"
    )
