"""ExportSettings: the export's flags come from it, and its checks meet CLI and Python callers alike."""

import subprocess
import sys

import pytest

from lstmserve.export.errors import ExportError
from lstmserve.export.settings import ExportSettings


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "a b"}, "model name 'a b' must be 1-64 letters"),
        (
            {"name": "digits", "version": 0},
            "--version must be a positive integer of at most 18 digits, got 0",
        ),
        ({"name": "digits", "quantize": "int4"}, "unknown quantization 'int4' for --quantize: choose int8"),
    ],
)
def test_export_settings_refuse_what_the_repository_cannot_hold(fields, message):
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        ExportSettings(**fields)


def test_the_export_command_refuses_a_bad_version_before_loading_anything(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmserve",
            "export",
            str(tmp_path / "none.pt"),
            "--name",
            "d",
            "--version",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "--version must be a positive integer" in done.stderr, done.stderr
