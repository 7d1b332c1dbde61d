"""A command whose extra is not installed says which to install, in one line, as the README promises.

The CLI runs in a real subprocess where everything the [client] extra does not install cannot be
found (each real finder is wrapped to find none of it, as in a venv without it): each command
then meets its first missing library where it really imports it. Which modules those are is read
from the installed metadata, not from lstmserve/extras.py's table.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from lstmserve.extras import DISTRIBUTIONS, extra_for, extras, normalized

_BLOCKER = """
import sys
blocked = set(sys.argv[1].split(","))
assert not blocked & {name.partition(".")[0] for name in sys.modules}, "imported before the test began"

class NotInstalled:
    # Wraps each real finder: a blocked module is found by none, as in a venv without it, so importing
    # it raises Python's own ModuleNotFoundError and importlib.util.find_spec says None.
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name in blocked or name.partition(".")[0] in blocked:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)

sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
from lstmserve.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _top_level_modules(distributions: set[str]) -> set[str]:
    """The import names the installed distributions give (google for protobuf, sklearn for ...)."""
    return {
        module
        for module, owners in metadata.packages_distributions().items()
        if {normalized(owner) for owner in owners} & distributions
    }


def _without_client_only() -> set[str]:
    """What a venv with only lstmserve[client] lacks: every module an extra installs but [client]."""
    by_extra = extras()
    everything = set().union(*by_extra.values())
    return _top_level_modules(everything - by_extra["client"]) - _top_level_modules(by_extra["client"])


def _run(blocked: set[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER, ",".join(sorted(blocked)), *args],
        capture_output=True,
        text=True,
        timeout=120,  # should a block fail, a command runs for real: it must not hang the suite
    )


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("serve", "--port", "0"), "serve"),
        (("train", "--quick", "--out", "{tmp}/x.pt"), "train"),
        (("import", "model.ckpt", "--name", "m"), "train"),
        (("export", "{tmp}/x.pt", "--repository", "{tmp}", "--name", "m"), "train"),
        (("demo",), "train"),  # the held-out digits come from scikit-learn
        (("bench",), "bench"),
    ],
)
def test_a_command_with_only_the_client_extra_says_which_extra_to_install(args, extra, tmp_path):
    blocked = _without_client_only()
    assert {"torch", "onnxruntime", "grpc_health", "sklearn"} <= blocked and "grpc" not in blocked
    done = _run(blocked, *(arg.format(tmp=tmp_path) for arg in args))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"lstmserve {args[0]}: error: ")
    assert f"lstmserve[{extra}]" in line


def test_a_missing_module_no_extra_installs_is_a_bug_and_shows_its_traceback():
    done = _run({"lstmserve.server.server"}, "serve", "--port", "0")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "No module named 'lstmserve.server.server'" in done.stderr
    assert "needs the [" not in done.stderr


@pytest.mark.parametrize(
    ("module", "command_extra", "extra"),
    [
        ("grpc_health.v1", "serve", "serve"),
        ("grpc", "client", "client"),
        ("grpc", "train", "client"),  # not the command's own: the smallest extra that installs it
        ("onnxruntime", "serve", "serve"),  # in [train] and [serve]: the command's own
        ("onnxruntime", "train", "train"),
        ("tensorflow", "train", "tf"),  # lstmserve import of a TF1 checkpoint
        ("keras", "train", "keras"),
        ("matplotlib", "bench", "bench"),
        ("lstmserve.server", "serve", None),
        ("yaml", "serve", None),  # a test tool, not a library lstmserve imports
    ],
)
def test_extra_for(module, command_extra, extra):
    assert extra_for(module, command_extra) == extra


def test_the_import_names_are_those_of_pyprojects_extras():
    """Each distribution an extra (but the dev tools') installs has its import name in the table, and
    each name in the table is what that distribution really installs."""
    by_extra = extras()
    installed = set().union(*(found for extra, found in by_extra.items() if extra != "dev"))
    assert installed == {normalized(d) for d in DISTRIBUTIONS.values()}
    owners = metadata.packages_distributions()
    for module, distribution in DISTRIBUTIONS.items():
        assert normalized(distribution) in {normalized(o) for o in owners.get(module, ())}, module
