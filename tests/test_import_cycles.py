"""No module of lstmserve imports, at its top, one that imports it back, not even for type hints: a
circle needs `if TYPE_CHECKING:` imports to load at all, and hides which of the two owns the type."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO


def packages() -> dict[str, Path]:
    """Each subpackage's folder, as pyproject.toml's [tool.setuptools.package-dir] maps them."""
    text = (REPO / "pyproject.toml").read_text()
    table = text[text.index("[tool.setuptools.package-dir]") :].split("\n\n", 1)[0]
    return {name: REPO / folder for name, folder in re.findall(r'^"([\w.]+)" = "([\w/]+)"$', table, re.M)}


def modules() -> dict[str, tuple[str, Path]]:
    """module name -> (the package its relative imports start from, its file)."""
    found = {}
    for package, folder in packages().items():
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = (package, path)
    return found


def top_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: its body's, and those under an `if` or `try` there (such as
    `if TYPE_CHECKING:`), not those inside functions."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "handlers", []) + getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
    return found


def imported(name: str, package: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that a module imports at its top."""
    targets = set()
    for node in top_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        # `from package import module` loads that module; its package is loading, or loaded, already
        submodules = {f"{base}.{alias.name}" for alias in node.names} & known
        targets |= submodules or {base}
    return (targets & known) - {name}


def test_no_module_imports_one_that_imports_it_back():
    found = modules()
    edges = {name: imported(name, package, path, set(found)) for name, (package, path) in found.items()}
    circles = []

    def visit(name: str, path: list[str], done: set[str]) -> None:
        for target in sorted(edges[name]):
            if target in path:
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in done:
                visit(target, [*path, target], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(edges):
        if name not in done:
            visit(name, [name], done)
    assert not circles, circles
