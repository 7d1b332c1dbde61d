"""docs/bring-your-model.md, run: a TF1 tutorial's model trained and saved by TensorFlow, imported,
served, and streamed row by row from the client, whose predictions equal TensorFlow's."""

from __future__ import annotations

import re
import subprocess
import sys

from ..conftest import REPO
from .conftest import run_batch


def test_tf1_tutorial_model_served_predicts_what_tensorflow_predicts(tmp_path):
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    trained = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "tf1_digits.py"),
            "--out",
            str(tmp_path / "tf1-digits"),
            "--steps",
            "150",
        ],
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert re.search(r"held-out accuracy \d+\.\d% on 297 digits", trained.stdout)

    models = tmp_path / "models"
    [imported] = run_batch(
        [
            [
                "import",
                str(tmp_path / "tf1-digits" / "model.ckpt"),
                "--head-kernel",
                "softmax/kernel",
                "--head-bias",
                "softmax/bias",
                "--head",
                "classify_last",
                "--name",
                "tf1digits",
                "--repository",
                str(models),
            ]
        ]
    )
    assert imported["code"] == 0, imported["stderr"][-3000:]
    assert "forget_bias 1 from the graph" in imported["stderr"]

    server = InProcessServer(Settings(repository=str(models))).start()
    try:
        streamed = subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "stream_digits.py"),
                str(tmp_path / "tf1-digits" / "tf_predictions.npz"),
                "--model",
                "tf1digits",
                "--address",
                server.address,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    verdict = re.search(
        r"(\d+)/(\d+) predictions equal TensorFlow's; largest logit gap (\S+)", streamed.stdout
    )
    assert verdict, streamed.stdout
    assert verdict.group(1) == verdict.group(2) == "32"
    assert float(verdict.group(3)) <= 1e-4
