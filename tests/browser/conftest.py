"""The console in a real browser: Debian's chromium (apt install chromium; .ci/run installs it) driven
by Playwright for Python, pointed at that binary: nothing here downloads a browser.

Each test's page fails the test if the browser logs an error or an uncaught exception, or if the page
asks anything of another origin (the console is self-contained: no CDN, no third party).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lstmserve.model.generated import ALPHABET
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS, REPO, random_checkpoint
from ..servers import InProcessServer

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the dev extra has it)"
)

DEFAULT_MODEL = REPO / "models" / DIGITS / "1" / "model.onnx"
# A model whose labels are characters, one-hot in and out: the console's "type a prompt" model.
WRITER, WRITER_LABELS = "writer", ALPHABET
# Where the tests leave their screenshots: `make screenshots` sets docs/images, whose files the
# README and docs/console.md show.
SCREENSHOTS = Path(os.environ.get("LSTMSERVE_SCREENSHOTS") or "/tmp/lstmserve-screenshots")


def chromium_path() -> str | None:
    """Debian's chromium: the binary itself, not its wrapper script (which only adds flags)."""
    for candidate in (
        "/usr/lib/chromium/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# Package-scoped, not session: Playwright's sync API runs an event loop on this thread while it is
# started, and every later test that calls asyncio.run() (the client's) would fail beside it.
@pytest.fixture(scope="package")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium: apt-get install chromium (Debian's; .ci/run installs it)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def console_repository(tmp_path_factory) -> Path:
    """digits v1 (the default model: the pad; its screenshots show what a user sees), writer v1
    (characters: generation) and chars v1 (neither: any input)."""
    from lstmserve.export.publish import export_checkpoint
    from lstmserve.model.train import TrainSettings, train, write_outputs

    if not DEFAULT_MODEL.exists():
        pytest.skip("no default model: run `make model` (`make test` does)")
    root = tmp_path_factory.mktemp("console-models")
    shutil.copytree(DEFAULT_MODEL.parent, root / DIGITS / "1")
    folder = root.parent
    chars = random_checkpoint(
        folder / "console-chars.pt",
        1,
        input_size=5,
        hidden_sizes=(12, 7),
        head="per_step",
        num_outputs=4,
        labels=("a", "b", "c", "d"),
    )
    export_checkpoint(chars, root, CHARS)
    # A few seconds of training on Python's documentation: letters in about the right proportions.
    trained = train(
        TrainSettings(dataset="text", hidden_sizes=(64,), max_epochs=4, limit=800), progress=False
    )
    writer = folder / "console-writer.pt"
    write_outputs(trained, writer, folder / "console-writer.metrics.json")
    export_checkpoint(writer, root, WRITER)
    return root


@pytest.fixture(scope="package")
def console_server(console_repository):
    running = InProcessServer(Settings(repository=str(console_repository))).start()
    yield running
    running.stop()


@pytest.fixture
def console_client(console_server):
    from lstmserve.client import Client

    with Client(console_server.address, timeout=20) as connected:
        yield connected


class Watched:
    """A page, and what it did that a test must not let pass: errors logged, and calls off its origin."""

    def __init__(self, context, origin: str):
        self.context = context
        self.origin = origin
        self.page = context.new_page()
        self.errors: list[str] = []
        self.refusals: set[int] = set()  # statuses a test provokes on purpose: the browser logs them
        self.elsewhere: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("request", self._request)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        status = re.fullmatch(
            r"Failed to load resource: the server responded with a status of (\d+) .*", message.text
        )
        if status is None or int(status.group(1)) not in self.refusals:
            self.errors.append(message.text)

    def _request(self, request) -> None:
        url = request.url
        if not (url.startswith(self.origin + "/") or url.startswith("data:")):
            self.elsewhere.append(url)

    def check(self) -> None:
        assert self.errors == [], f"the browser logged errors: {self.errors}"
        assert self.elsewhere == [], f"the page asked other origins: {self.elsewhere}"


@contextlib.contextmanager
def watching(browser, origin: str, **options) -> Iterator[Watched]:
    """A fresh tab on `origin`, in a context of its own (nothing stored carries over), checked once
    it is closed. `options`: the context's, as Playwright takes them."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    tab = Watched(context, origin)
    try:
        yield tab
    finally:
        context.close()
    tab.check()


@pytest.fixture
def watched(browser, console_server):
    """A watched tab on the console of console_server."""
    with watching(browser, console_server.http_url) as tab:
        yield tab


def screenshot(page, name: str, locator=None) -> Path:
    """Save what the page shows as SCREENSHOTS/console-NAME.png (the file the docs show)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"console-{name}.png"
    (locator or page).screenshot(path=str(path), animations="disabled")
    return path
