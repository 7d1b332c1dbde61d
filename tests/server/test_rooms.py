"""The data plane knows no wire, and only the runtime knows the model's state tensor names.

Read from the source (an import or a use of contract.initial_*/final_* is visible there), so that a
third protocol cannot creep into the middle of the request path unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"
# Every step between an adapter's decode and its encode (server/dataplane.py's diagram).
DATA_PLANE = ["dataplane", "request", "validation", "limits", "batcher", "runtime", "generation", "sealing"]
STATE_NAMES = {"initial_c", "initial_h", "final_c", "final_h"}


def _tree(module: str) -> ast.Module:
    return ast.parse((SERVER / f"{module}.py").read_text())


def _imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {f"{'.' * node.level}{node.module or ''}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("module", DATA_PLANE)
def test_the_data_plane_imports_no_wire(module):
    wires = [name for name in _imports(_tree(module)) if any(w in name for w in ("proto", "grpc"))]
    assert not wires, f"server/{module}.py imports {wires}: decode and encode belong to server/protocols/"


@pytest.mark.parametrize("module", [m for m in DATA_PLANE if m != "runtime"])
def test_only_the_runtime_names_the_state_tensors(module):
    used = {
        node.attr
        for node in ast.walk(_tree(module))
        if isinstance(node, ast.Attribute) and node.attr in STATE_NAMES
    }
    assert not used, f"server/{module}.py uses contract.{sorted(used)}: only runtime.py maps a State to them"


def test_the_checks_find_what_they_look_for():
    """The two checks above, on modules that do what they forbid: they can fail."""
    assert any("proto" in name for name in _imports(_tree("protocols/v1")))
    runtime = {node.attr for node in ast.walk(_tree("runtime")) if isinstance(node, ast.Attribute)}
    assert STATE_NAMES <= runtime
