"""The console as a person uses it, for the browser tests: open it, draw on a pad, read what it shows."""

from __future__ import annotations

import numpy as np
from playwright.sync_api import Page, expect

SIDE = 8


def open_console(page: Page, url: str) -> Page:
    page.goto(url + "/")
    expect(page.locator("table.models tbody tr").first).to_be_visible()
    return page


def held_out_digits(*indexes: int) -> list[tuple[np.ndarray, int]]:
    """Digits the default model never saw (the seed-0 test split `lstmserve train` holds out, as
    `lstmserve demo` streams them), each as its 8 x 8 pixels (0-16) and its label."""
    from lstmserve.model.data import load_dataset, split

    data, _ = load_dataset("digits")
    test = split(data, None, seed=0).test
    return [(np.rint(test.inputs[i] * 16).astype(np.int64), int(test.targets[i])) for i in indexes]


def pad(page: Page, number: int):
    return page.locator(f'[data-pad="{number}"]')


def cell(page: Page, number: int, row: int, col: int):
    return pad(page, number).locator(f'.cell[data-row="{row}"][data-col="{col}"]')


def draw_row(page: Page, number: int, row: int, pixels: np.ndarray) -> None:
    """Ink one row with the mouse, each cell at its own level, then send it; wait for its answer."""
    ink = page.get_by_label("Ink (0 erases, 16 is darkest)")
    for col, value in enumerate(pixels):
        if value:
            ink.fill(str(int(value)))
            cell(page, number, row, col).click()
    pad(page, number).get_by_role("button", name="Send next row").click()
    expect(pad(page, number)).to_have_attribute("data-sent-rows", str(row + 1))


def draw_rows(page: Page, number: int, image: np.ndarray, rows: range) -> None:
    for row in rows:
        draw_row(page, number, row, image[row])


def logits(page: Page, number: int) -> np.ndarray:
    """The logits the pad shows, exactly as the page holds them."""
    items = pad(page, number).locator(".scores li")
    return np.array(
        [float(value) for value in items.evaluate_all("(items) => items.map((i) => i.dataset.logit)")]
    )


def predicted(page: Page, number: int) -> str:
    return pad(page, number).locator(".prediction").get_attribute("data-label") or ""
