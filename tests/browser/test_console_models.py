"""What is served, as the console shows it: every model version with its details and health, the
server's and each device's health, and live figures that follow the traffic."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from lstmserve.client import InvalidArgumentError

from ..conftest import CHARS, DIGITS
from .conftest import WRITER, screenshot
from .console_page import open_console


def test_every_model_version_is_listed_with_what_the_client_says_of_it(
    watched, console_server, console_client
):
    page = open_console(watched.page, console_server.http_url)
    rows = page.locator("table.models tbody tr")
    served = console_client.models()
    expect(rows).to_have_count(len(served))
    for info in served:
        row = page.locator(f'table.models tr[data-model="{info.name}:{info.version}"]')
        cells = row.locator("td").all_inner_texts()
        inputs, layers, head, outputs, device, fingerprint, quantization, takes_from, health = cells[:9]
        assert int(inputs) == info.input_size
        assert layers == " x ".join(map(str, info.hidden_sizes))
        assert head == info.head
        # The first dozen labels, a space or a newline quoted as JSON quotes it.
        shown = [
            label if label.strip() == label and label else json.dumps(label) for label in info.labels[:12]
        ]
        assert outputs == f"{info.num_outputs}: {' '.join(shown)}" + (" …" if len(info.labels) > 12 else "")
        assert device.startswith("cpu")
        assert fingerprint == info.fingerprint
        assert quantization == "none"
        assert takes_from == "itself only"
        assert health == "ready"
    expect(page.locator('[data-health="server"]')).to_have_text("ready")
    expect(page.locator('[data-device="cpu"]')).to_have_text("cpu serving")
    expect(page.locator('[data-device="cuda"]')).to_have_text("cuda unused")
    assert {info.name for info in served} == {DIGITS, CHARS, WRITER}


def test_live_figures_follow_the_calls_made(watched, console_server, console_client):
    page = open_console(watched.page, console_server.http_url)
    expect(page.locator('[data-figure="cpu"]')).to_have_text(re.compile(r"%$"))  # two reads: a window
    refused = page.locator('.refusals li[data-code="INVALID_ARGUMENT"]')
    before = int(refused.inner_text().rpartition(" ")[2]) if refused.count() else 0
    digits = page.locator('table.figures tr[data-model="digits:1"]')
    x = np.zeros((3, 8, 8), np.float32)  # 3 rows a call: a run of them has at least 3 rows
    for _ in range(30):
        console_client.infer(DIGITS, x)
    with pytest.raises(InvalidArgumentError):
        console_client.infer(DIGITS, np.zeros((1, 2, 5), np.float32))  # 5 features, not 8
    expect(digits).to_be_visible()
    # Rates over the last seconds: 30 calls in that window make more than 0 calls/s.
    expect(digits.locator('[data-figure="calls_per_second"]')).not_to_have_text(re.compile(r"^(–|0\.0)$"))
    expect(digits.locator('[data-figure="p50"]')).to_have_text(re.compile(r"^[\d.]+ (ms|s)$"))
    expect(digits.locator('[data-figure="p99"]')).to_have_text(re.compile(r"^[\d.]+ (ms|s)$"))
    rows_per_run = digits.locator('[data-figure="rows_per_run"]')
    expect(rows_per_run).to_have_text(re.compile(r"^\d+\.\d$"))
    assert float(rows_per_run.inner_text()) >= 3
    expect(refused).to_have_text(f"INVALID_ARGUMENT: {before + 1}")
    expect(page.locator('[data-figure="rss"]')).to_have_text(re.compile(r"^[\d.]+ MiB$"))
    screenshot(page, "overview")  # the first screen, as a browser opens it
