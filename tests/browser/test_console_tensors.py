"""Any other model: an input pasted as JSON, or uploaded as .json or .npy, runs once and every output is
shown; the values are the client's."""

from __future__ import annotations

import json

import numpy as np
from playwright.sync_api import expect

from ..conftest import CHARS
from .console_page import open_console


def shown(page, name: str) -> np.ndarray:
    text = page.locator(f'.outputs section[data-name="{name}"] pre').inner_text()
    return np.array(json.loads(text))


def test_pasted_and_uploaded_inputs_give_the_clients_outputs(
    watched, console_server, console_client, tmp_path
):
    x = np.random.default_rng(7).random((2, 3, 5), dtype=np.float32)
    expected = console_client.infer(CHARS, x)
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {CHARS}:1").click()
    run = page.get_by_role("button", name="Run")
    for load in ("json", "npy", "file"):
        page.locator(".outputs").evaluate("(node) => node.replaceChildren()")
        if load == "json":
            page.get_by_label("Input as JSON").fill(json.dumps(x.tolist()))
        else:
            path = tmp_path / ("x.npy" if load == "npy" else "x.json")
            np.save(path, x) if load == "npy" else path.write_text(json.dumps(x.tolist()))
            page.get_by_label("or a file (.json, .npy)").set_input_files(str(path))
            expect(page.locator(".tensor-panel .message")).to_contain_text("read: press Run")
        run.click()
        expect(page.locator('.outputs section[data-name="logits"]')).to_be_visible()
        # Shown to 6 significant digits.
        np.testing.assert_allclose(
            shown(page, "logits"), expected.logits.reshape(-1)[:64], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            shown(page, "final_h_1"), expected.state.layers[1][1].reshape(-1), rtol=1e-5, atol=1e-6
        )


def test_an_input_of_the_wrong_shape_is_refused_with_the_servers_reason(watched, console_server):
    watched.refusals.add(400)
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {CHARS}:1").click()
    page.get_by_label("Input as JSON").fill("[[[1, 2, 3]]]")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".tensor-panel .message")).to_contain_text("5")
    page.get_by_label("Input as JSON").fill("[[1, 2], [3]]")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".tensor-panel .message")).to_contain_text("differ in length")
