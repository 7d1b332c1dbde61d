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
    message = page.locator(".tensor-panel .message")
    page.get_by_label("Input as JSON").fill("[[[1, 2, 3]]]")
    page.get_by_role("button", name="Run").click()
    expect(message).to_contain_text("chars v1 takes 5")  # the server's words
    for ragged in ("[[1, 2], [3]]", "[[[1, 2]], [[3], [4]]]", "[[1, [2]], [3, 4]]"):
        page.get_by_label("Input as JSON").fill(ragged)
        page.get_by_role("button", name="Run").click()
        expect(message).to_have_text("the nested array's rows differ in length")


def test_a_refused_file_leaves_nothing_of_the_input_before_it(watched, console_server, tmp_path):
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {CHARS}:1").click()
    upload = page.get_by_label("or a file (.json, .npy)")
    message = page.locator(".tensor-panel .message")
    good = tmp_path / "good.npy"
    np.save(good, np.ones((1, 2, 5), np.float32))
    upload.set_input_files(str(good))
    page.get_by_role("button", name="Run").click()
    expect(page.locator('.outputs section[data-name="logits"]')).to_be_visible()
    refused = {
        "u16.npy": (np.ones((1, 2, 5), np.uint16), "dtype <u2 is not read here"),
        "big.npy": (np.ones((1, 2, 5), ">f4"), "big-endian"),
        "nan.npy": (np.full((1, 2, 5), np.nan, np.float32), "NaN or infinity"),
        "fortran.npy": (np.asfortranarray(np.ones((1, 2, 5), np.float32)), "Fortran order"),
    }
    for name, (array, reason) in refused.items():
        np.save(tmp_path / name, array)
        upload.set_input_files(str(tmp_path / name))
        expect(message).to_contain_text(reason)
        expect(page.locator(".outputs section")).to_have_count(0)
        assert page.get_by_label("Input as JSON").input_value() == ""
    (tmp_path / "short.npy").write_bytes(good.read_bytes()[:-4])
    upload.set_input_files(str(tmp_path / "short.npy"))
    expect(message).to_contain_text("its shape says 40")
