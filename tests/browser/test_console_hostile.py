"""The console against what goes wrong: a server that restarts (or another replica answers) between two
reads of the figures, a server that stops answering, a generation left running behind the page, a
row lost on the way, a token the browser cannot send, a pasted state that is not one, a sealed state
end to end, and a keyboard user's place in a list that is read again."""

from __future__ import annotations

import base64
import json
import os
import time

import numpy as np
import pytest
import requests
from playwright.sync_api import expect

from lstmserve.server.settings import Settings

from ..conftest import DIGITS
from ..servers import InProcessServer
from .conftest import WRITER, watching
from .console_page import SIDE, draw_rows, held_out_digits, logits, open_console, pad

TOKEN, OTHER = "hostile-token-0123456789", "another-token-0123456789"
LONG = 1_000_000  # steps: minutes of generation, far past any test

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
    # The page's clock, set by the test: each read a second after the last, exactly, whatever the
    # machine's load; so the rate shown before the restart is exactly 100 calls over 1 s.
    page.clock.install()
    page.clock.pause_at(time.time() + 60)  # paused: it moves only when run_for moves it
    open_console(page, console_server.http_url)
    cpu = page.locator('[data-figure="cpu"]')
    digits = page.locator('tr[data-model="digits:1"]')
    figures = page.locator('[data-figure="cpu"], tr[data-model="digits:1"] td')
    seen = set()
    while len(served) < len(reads) + 2:  # each read and a few after
        before = len(served)
        page.clock.run_for(1000)  # the page reads once a second
        deadline = time.monotonic() + 10
        while len(served) == before:
            assert time.monotonic() < deadline, "the page did not read the figures again"
            page.wait_for_timeout(20)
        if len(served) == 2:  # the second read, before the restart: a window of one second
            expect(cpu).to_have_text("100%")
            expect(digits.locator('[data-figure="calls_per_second"]')).to_have_text("100.0")
        seen.update(figures.all_inner_texts())
    seen.update(figures.all_inner_texts())
    assert not [text for text in seen if text.startswith("-")], seen


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


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    return tmp_path_factory.mktemp("console-hostile") / "tokens"


@pytest.fixture(scope="module")
def long_server(console_repository, tokens_file):
    """Tokens on, and generations as long as anyone asks for."""
    tokens_file.write_text(f"{TOKEN}\n")
    settings = Settings(
        repository=str(console_repository), auth_tokens=str(tokens_file), max_generate_steps=LONG
    )
    server = InProcessServer(settings).start()
    yield server
    server.stop()


def only_token(server, tokens_file) -> None:
    """TOKEN the one token again (a test revokes it), once the server has read the file again."""
    tokens_file.write_text(f"{TOKEN}\n")
    deadline = time.monotonic() + 5
    while figures_of(server, TOKEN).status_code != 200:
        assert time.monotonic() < deadline, "the server did not read its token file again"
        time.sleep(0.1)


def figures_of(server, token: str) -> requests.Response:
    headers = {"authorization": f"Bearer {token}"}
    return requests.get(server.http_url + "/console/api/figures", headers=headers, timeout=5)


@pytest.fixture
def tab(browser, long_server, tokens_file):
    only_token(long_server, tokens_file)
    with watching(browser, long_server.http_url) as watched:
        watched.page.goto(long_server.http_url + "/")
        watched.page.get_by_label("Bearer token").fill(TOKEN)
        watched.page.get_by_role("button", name="Use token").click()
        expect(watched.page.locator("table.models tbody tr").first).to_be_visible()
        yield watched


def streams_open(server, token: str) -> float:
    return figures_of(server, token).json()["server"]["streams"]


def generating(page, server) -> None:
    """Start a generation of LONG characters on the writer, and see it run on the server."""
    page.get_by_role("button", name=f"try {WRITER}:1").click()
    page.get_by_label("Characters").fill(str(LONG))
    page.get_by_role("button", name="Generate", exact=True).click()
    # (the writer's first characters may be spaces, which expect() takes for nothing)
    page.wait_for_function("() => document.querySelector('output.generated .continuation').textContent")
    assert streams_open(server, TOKEN) == 1


def ends_on_the_server(server, token: str, seconds: float = 3) -> None:
    deadline = time.monotonic() + seconds
    while streams_open(server, token) != 0:
        assert time.monotonic() < deadline, "the generation goes on, with nothing on the page to stop it"
        time.sleep(0.1)


def test_a_generation_ends_when_another_model_is_tried(tab, long_server):
    """ "Try" on another row replaces the text panel and its Stop button: the generation must end with
    them, not run on unseen (holding a stream and a core) until its last step."""
    generating(tab.page, long_server)
    tab.page.get_by_role("button", name=f"try {DIGITS}:1").click()
    ends_on_the_server(long_server, TOKEN)


def test_a_generation_ends_when_its_token_is_revoked(tab, long_server, tokens_file):
    """The page drops to the token form and shows nothing; what it had started ends too."""
    page = tab.page
    generating(page, long_server)
    tab.refusals.add(401)
    tokens_file.write_text(f"{OTHER}\n")  # read again within a second
    expect(page.get_by_label("Bearer token")).to_be_visible(timeout=5000)
    expect(page.locator("#console")).to_be_hidden()
    assert WRITER not in page.locator("main").inner_html()
    ends_on_the_server(long_server, OTHER)


def test_a_row_lost_on_the_way_can_be_sent_again(watched, console_server, console_client):
    """The server holds nothing between calls: a row that got no answer (the server restarting, the
    network) or was turned away for now (503: stopping) left the pad's state as it was. The pad must
    let that row be sent again and go on to the client's logits, not stop for good."""
    ((image, _),) = held_out_digits(5)
    page = open_console(watched.page, console_server.http_url)
    draw_rows(page, 1, image, range(2))
    failures = [
        lambda route: route.abort("connectionrefused"),
        lambda route: route.fulfill(status=503, json={"error": "the server is stopping"}),
    ]
    page.route("**/infer", lambda route: failures.pop(0)(route) if failures else route.continue_())
    watched.refusals.add(503)
    send, message = pad(page, 1).get_by_role("button", name="Send next row"), pad(page, 1).locator(".message")
    ink = page.get_by_label("Ink (0 erases, 16 is darkest)")  # row 3 inked, then sent: lost
    for col, value in enumerate(image[2]):
        if value:
            ink.fill(str(int(value)))
            page.locator(f'[data-pad="1"] .cell[data-row="2"][data-col="{col}"]').click()
    send.click()
    expect(message).to_contain_text("Row 3 was not taken: Failed to fetch")
    send.click()
    expect(message).to_contain_text("Row 3 was not taken: the server is stopping")
    send.click()
    expect(pad(page, 1)).to_have_attribute("data-sent-rows", "3")
    expect(message).to_have_text("")
    draw_rows(page, 1, image, range(3, SIDE))
    whole = console_client.infer(DIGITS, (image / 16.0).astype(np.float32)[None]).logits[0]
    np.testing.assert_allclose(logits(page, 1), whole, rtol=0, atol=1e-5)
    # The browser logs the connection it was refused: this test's doing.
    watched.errors.remove("Failed to load resource: net::ERR_CONNECTION_REFUSED")


def test_a_token_no_header_can_carry_is_refused_at_once(browser, long_server, tokens_file):
    """A token pasted with a typographic dash or an ellipsis cannot go in a header (Latin-1 only):
    fetch() throws before anything is sent. The page must say what is wrong with it, not call that a server
    that does not answer and retry it every 5 seconds for good."""
    only_token(long_server, tokens_file)
    with watching(browser, long_server.http_url) as tab:
        page = tab.page
        page.goto(long_server.http_url + "/")
        for pasted in [TOKEN.replace("-", "\u2014"), TOKEN.replace("0123", "\u2026")]:
            page.get_by_label("Bearer token").evaluate("(input, value) => { input.value = value; }", pasted)
            page.get_by_role("button", name="Use token").click()
            expect(page.locator("#token-message")).to_contain_text("cannot be sent")
            expect(page.locator("#status")).to_have_text("")
            assert page.evaluate("() => sessionStorage.length") == 0
        page.get_by_label("Bearer token").fill(TOKEN)  # and the right one is taken
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("table.models tbody tr").first).to_be_visible()


def test_a_pasted_state_that_is_not_one_is_refused_with_a_reason(watched, console_server):
    """Odd content in the resume box is said to be wrong in the page's words, makes no pad (nor skips a
    pad's number), and the server's own refusal is left to what the page cannot know."""
    page = open_console(watched.page, console_server.http_url)
    resume, message = page.get_by_label("Resume from a copied state"), page.locator(".resume .message")
    tensor = {"name": "sealed_state", "datatype": "BYTES", "shape": [1]}
    for pasted in [
        [1],
        [None],
        [{"name": "initial_c_0"}],
        [{**tensor, "data": "not a list"}],
        [{**tensor, "data": [{"a": 1}]}],
        [{**tensor, "data": ["!!! not base64"]}],
    ]:
        resume.fill(json.dumps({"inputs": pasted}))
        page.get_by_role("button", name="Resume on a new pad").click()
        expect(message).to_contain_text("each tensor")
        expect(page.locator("[data-pad]")).to_have_count(1)
    resume.fill(json.dumps({"inputs": [{**tensor, "data": ["AAAA"]}]}))  # a state's form: the server judges
    page.get_by_role("button", name="Resume on a new pad").click()
    expect(pad(page, 2).locator("h4")).to_have_text("Pad 2: resumed after 0 rows")
    expect(pad(page, 2).locator(".state-line")).to_contain_text("sealed_state, 3 B")


@pytest.fixture(scope="module")
def sealing_server(console_repository, tmp_path_factory):
    keys = tmp_path_factory.mktemp("console-keys") / "keys"
    keys.write_text(os.urandom(32).hex() + "\n")
    server = InProcessServer(Settings(repository=str(console_repository), state_key_file=str(keys))).start()
    yield server
    server.stop()


def test_sealed_states_are_carried_copied_and_resumed(browser, sealing_server):
    """With --state-key-file the state is one sealed_state of base64: the pad shows its size, and a copy
    of it resumed on a new pad goes on exactly as the pad it came from."""
    ((image, _),) = held_out_digits(6)
    with watching(browser, sealing_server.http_url) as tab:
        page = open_console(tab.page, sealing_server.http_url)
        draw_rows(page, 1, image, range(SIDE // 2))
        copied = json.loads(pad(page, 1).locator(".state-json").input_value())
        (sealed,) = copied["inputs"]
        assert sealed["name"] == "sealed_state" and sealed["datatype"] == "BYTES"
        size = len(base64.b64decode(sealed["data"][0]))
        expect(pad(page, 1).locator(".state-line")).to_contain_text(f"sealed_state, {size / 1024:.1f} KiB")
        page.get_by_label("Resume from a copied state").fill(json.dumps(copied))
        page.get_by_role("button", name="Resume on a new pad").click()
        draw_rows(page, 1, image, range(SIDE // 2, SIDE))
        draw_rows(page, 2, image, range(SIDE // 2, SIDE))
        np.testing.assert_array_equal(logits(page, 2), logits(page, 1))


def test_the_model_list_read_again_keeps_the_keyboards_place(watched, console_server):
    """The list is read every 5 seconds: one that has not changed must not be built again under a
    keyboard (or screen reader) user, whose focus would drop to the page's start each time."""
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {WRITER}:1").focus()
    page.wait_for_timeout(5500)  # a read of the list
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == f"try {WRITER}:1"


def test_stop_ends_the_generation_on_the_server(tab, long_server):
    generating(tab.page, long_server)
    tab.page.get_by_role("button", name="Stop").click()
    expect(tab.page.locator(".text-panel .message")).to_have_text("Stopped.")
    ends_on_the_server(long_server, TOKEN)
