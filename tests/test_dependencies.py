"""The server and the client must not need torch (nor the client onnxruntime): small images and apps."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (["lstmserve.server.server", "lstmserve.server.cli"], ["torch", "sklearn"]),
        (["lstmserve.client", "lstmserve.client.cli"], ["torch", "onnxruntime", "onnx", "sklearn"]),
        (["lstmserve.cli"], ["torch", "onnxruntime", "onnx", "sklearn"]),  # building every parser
    ],
)
def test_stage_imports_stay_light(modules, forbidden):
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import lstmserve.cli as cli; cli.build_parser()\n"
        f"print([m for m in {forbidden!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
