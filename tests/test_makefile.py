"""The Makefile's recipes as make would run them (dry runs: nothing is installed or built here)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> list[str]:
    # --no-print-directory: under `make test` this make is a sub-make (MAKELEVEL is set), which
    # would otherwise print "Entering directory" around its recipe.
    command = ["make", "--dry-run", "--no-print-directory", *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SET_UP = [
    "python3 -m venv .venv",
    ".venv/bin/pip install --quiet --upgrade pip",
    ".venv/bin/pip install --quiet -c constraints.txt -e '.[train,serve,client]'",
    "touch .venv/.installed",
]


def test_set_up_takes_torch_from_pips_own_indexes_unless_told_another():
    # --always-make: the recipe as a fresh clone runs it, whether or not .venv exists here.
    # PYTHON and TORCH_INDEX given, as a caller's environment may set either.
    default = dry_run("--always-make", ".venv/.installed", "PYTHON=python3", "TORCH_INDEX=")
    assert default == SET_UP  # as it always was
    with_index = dry_run("--always-make", ".venv/.installed", "PYTHON=python3", f"TORCH_INDEX={CPU_INDEX}")
    torch_first = f".venv/bin/pip install --quiet -c constraints.txt --index-url '{CPU_INDEX}' torch"
    assert with_index == [*SET_UP[:2], torch_first, *SET_UP[2:]]


@pytest.mark.parametrize(
    ("container", "keeps_healthcheck"),
    [("podman", True), ("/usr/bin/podman", True), ("sudo podman", True), ("docker", False)],
)
def test_make_image_builds_a_format_that_keeps_the_healthcheck(container, keeps_healthcheck):
    """podman's default (OCI) format drops HEALTHCHECK; docker has no --format and keeps it anyway."""
    lines = dry_run("image", "image-cuda", f"CONTAINER={container}")
    builds = [line for line in lines if line.startswith(f"{container} build ")]
    assert len(builds) == 2, lines
    for line in builds:
        assert ("--format docker" in line) == keeps_healthcheck, line
        assert ("--format" in line) == keeps_healthcheck, line
