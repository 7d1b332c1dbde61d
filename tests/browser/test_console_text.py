"""A model whose labels are characters: a prompt typed in the console is generated on, streamed a
character at a time, and the text is the client's greedy generation's."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from .conftest import WRITER, WRITER_LABELS, screenshot
from .console_page import open_console

PROMPT, STEPS = "the ", 40


def one_hot(text: str) -> np.ndarray:
    steps = np.zeros((1, len(text), len(WRITER_LABELS)), np.float32)
    steps[0, np.arange(len(text)), [WRITER_LABELS.index(char) for char in text]] = 1
    return steps


def test_a_typed_prompt_is_generated_on_as_the_client_generates(watched, console_server, console_client):
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {WRITER}:1").click()
    expect(page.locator("#try-heading")).to_have_text(f"Try {WRITER} v1")
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Characters").fill(str(STEPS))
    generate = page.get_by_role("button", name="Generate", exact=True)
    output = page.locator("output.generated")
    for temperature, seed in [(0, None), (0.8, 7)]:
        page.get_by_label("Temperature (0: the likeliest each time)").fill(str(temperature))
        page.get_by_label("Seed (the same seed, the same text)").fill("" if seed is None else str(seed))
        generate.click()
        expect(output).to_have_attribute("data-done", "true")
        generation = console_client.generate(
            WRITER, one_hot(PROMPT), STEPS, temperature=temperature, seed=seed
        )
        expected = "".join(WRITER_LABELS[int(step.choices[0])] for step in generation)
        assert output.locator(".continuation").text_content() == expected
        expect(output.locator(".prompt")).to_have_text(PROMPT)
    expect(page.locator(".text-panel .state-line")).to_contain_text("Final state: initial_c_0, initial_h_0")
    screenshot(page, "generate", page.locator(".text-panel"))


def test_characters_the_model_does_not_know_are_refused_with_the_servers_reason(watched, console_server):
    watched.refusals.add(400)
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {WRITER}:1").click()
    page.get_by_label("Prompt").fill("the ~")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator(".text-panel .message")).to_contain_text("does not know")


def test_a_drawn_seed_typed_back_writes_the_same_text(watched, console_server, console_client):
    page = open_console(watched.page, console_server.http_url)
    page.get_by_role("button", name=f"try {WRITER}:1").click()
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Characters").fill(str(STEPS))
    page.get_by_label("Temperature (0: the likeliest each time)").fill("1")
    seed = page.get_by_label("Seed (the same seed, the same text)")
    output = page.locator("output.generated")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(output).to_have_attribute("data-done", "true")
    expect(seed).to_have_attribute("placeholder", re.compile(r"^\d+ \(drawn\)$"))
    drawn = int(seed.get_attribute("placeholder").split()[0])
    first = output.locator(".continuation").text_content()
    seed.fill(str(drawn))
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(output).to_have_attribute("data-done", "true")
    assert output.locator(".continuation").text_content() == first
    generation = console_client.generate(WRITER, one_hot(PROMPT), STEPS, temperature=1.0, seed=drawn)
    assert "".join(WRITER_LABELS[int(step.choices[0])] for step in generation) == first
