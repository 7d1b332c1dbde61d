"""The console against what goes wrong: a server that restarts (or another replica answers) between two
reads of the figures, a server that stops answering, a generation left running behind the page, a
token the browser cannot send, a pasted state that is not one, a row lost on the way."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from .console_page import open_console

# The latency histogram's bounds, as the metrics have them.
BOUNDS = ["0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]
BOUNDS += ["1.0", "2.0", "+Inf"]


def figures_read(cpu_seconds: float, calls: int) -> dict:
    """A /console/api/figures document: `calls` answered calls of digits v1, over the first buckets."""
    latency = [[bound, min(calls, calls * (i + 1) // 6)] for i, bound in enumerate(BOUNDS)]
    server = {"streams": 0, "calls": 0, "inflight_bytes": 0, "rss_bytes": 1e8, "cpu_seconds": cpu_seconds}
    digits = {"codes": {"OK": calls}, "latency": latency, "runs": calls // 2, "rows": calls}
    return {"server": server, "models": {"digits:1": digits}}


def test_counters_that_go_back_start_the_window_again(watched, console_server):
    """After a restart (or behind a load balancer, another replica) every counter is lower than the
    window's first read: the page must not show a negative rate or CPU share, as rate() would not."""
    reads = [figures_read(100, 10_000), figures_read(101, 10_100), figures_read(1, 50), figures_read(1.2, 80)]
    served = []

    def answer(route):
        read = reads[min(len(served), len(reads) - 1)]
        served.append(read)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(read))

    page = watched.page
    page.route("**/console/api/figures", answer)
    open_console(page, console_server.http_url)
    figures = page.locator('[data-figure="cpu"], tr[data-model="digits:1"] td')
    seen = set()
    while len(served) < len(reads) + 2:  # each read and a few after: the page reads once a second
        seen.update(figures.all_inner_texts())
        page.wait_for_timeout(200)
    assert not [text for text in seen if text.startswith("-")], seen
    assert {"99.9", "100.0", "100.1"} & seen, seen  # the rate before the restart was shown


def test_a_server_that_stops_answering_is_said_to_and_not_asked_again_and_again(watched, console_server):
    """A server that hangs (stopped, its host gone) accepts and never answers: the page must say so, not
    show old figures as live while a read a second piles up behind it, and go on once it answers."""
    page = open_console(watched.page, console_server.http_url)
    held = []
    page.route("**/console/api/figures", lambda route: held.append(route))  # never answered
    status = page.locator("#status")
    expect(status).to_contain_text("The server did not answer", timeout=10_000)
    assert len(held) <= 2, f"{len(held)} reads were left waiting at once"
    page.unroute("**/console/api/figures")
    expect(status).to_have_text("", timeout=10_000)
    expect(page.locator('[data-figure="streams"]')).to_have_text("0")
