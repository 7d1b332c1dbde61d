"""The console's files as they ship: plain modules with no build step, nothing inline for the
Content-Security-Policy to forbid, nothing fetched from elsewhere, no HTML made from strings, and no
file that nothing loads."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

STATIC = resources.files("lstmserve.server.console") / "static"
FILES = {entry.name: entry.read_text() for entry in STATIC.iterdir() if entry.is_file()}
SCRIPTS = {name: text for name, text in FILES.items() if name.endswith(".js")}


def test_the_page_has_no_inline_script_style_or_handler():
    page = FILES["index.html"]
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page, re.S):
        assert script.strip() == "", "inline script"
    assert all('type="module"' in tag and "src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_make_no_html_from_strings_and_evaluate_nothing(name):
    for forbidden in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        assert forbidden not in SCRIPTS[name], f"{name} uses {forbidden}"


def test_nothing_is_fetched_from_another_origin():
    for name, text in FILES.items():
        urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text)
        # The SVG namespace names a format; nothing fetches it.
        assert [url for url in urls if url != "http://www.w3.org/2000/svg"] == [], name


def test_every_file_is_loaded_and_every_import_exists():
    loaded = set(re.findall(r'(?:href|src)="/console/([^"]+)"', FILES["index.html"]))
    pending = [name for name in loaded if name.endswith(".js")]
    while pending:
        imports = re.findall(r'^import .* from "\./([^"]+)";$', SCRIPTS[pending.pop()], re.M)
        for module in imports:
            assert module in SCRIPTS, f"{module} is imported but not shipped"
            if module not in loaded:
                loaded.add(module)
                pending.append(module)
    assert loaded | {"index.html"} == set(FILES)


def test_the_docs_show_only_screenshots_the_tests_take():
    """README.md and docs/console.md show docs/images/console-*.png: each must be one that a browser
    test saves (`make screenshots` writes them), and be there."""
    repo = Path(__file__).resolve().parents[2]
    taken = {
        f"console-{name}.png"
        for test in Path(__file__).parent.glob("test_*.py")
        for name in re.findall(r'screenshot\(page, "([a-z-]+)"', test.read_text())
    }
    shown = set(re.findall(r"images/(console-[a-z-]+\.png)", (repo / "README.md").read_text()))
    shown |= set(re.findall(r"images/(console-[a-z-]+\.png)", (repo / "docs" / "console.md").read_text()))
    assert shown and shown <= taken
    assert all((repo / "docs" / "images" / name).is_file() for name in shown)
