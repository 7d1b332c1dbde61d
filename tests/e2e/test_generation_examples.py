"""The sequence-out examples, run as a user runs them (smaller): seq2seq handoff and generation, the
forecaster against the last value, and text from the character model through `lstmserve generate`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lstmserve.export.publish import export_checkpoint
from lstmserve.model.train import TrainSettings, train, write_outputs
from lstmserve.server.settings import Settings

from ..conftest import REPO
from ..servers import InProcessServer


def run(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequence-out")
    models = folder / "models"
    run(
        str(REPO / "examples" / "seq2seq_reverse.py"),
        "--repository",
        str(models),
        "--checkpoints",
        str(folder / "checkpoints"),
        "--steps",
        "300",
        "--hidden",
        "32",
    )
    for name, settings in (
        ("sines", TrainSettings(dataset="sines", hidden_sizes=(16,), max_epochs=6)),
        ("text", TrainSettings(dataset="text", hidden_sizes=(32,), max_epochs=1, limit=400)),
    ):
        result = train(settings, progress=False)
        write_outputs(result, folder / f"{name}.pt", folder / f"{name}.json")
        export_checkpoint(folder / f"{name}.pt", models, name)
    return folder


@pytest.fixture(scope="module")
def server(repository):
    running = InProcessServer(Settings(repository=str(repository / "models"))).start()
    yield running
    running.stop()


def test_seq2seq_served_decodes_as_pytorch_does(repository, server):
    done = run(
        str(REPO / "examples" / "seq2seq_reverse.py"),
        "--repository",
        str(repository / "models"),
        "--checkpoints",
        str(repository / "checkpoints"),
        "--serve-only",
        "--address",
        server.address,
    )
    assert "1000/1000 sequences equal PyTorch's" in done.stdout, done.stdout


def test_the_forecaster_beats_the_last_value(server):
    done = run(str(REPO / "examples" / "forecast.py"), "--address", server.address)
    found = re.search(r"all 20 steps: model ([\d.]+), last value ([\d.]+)", done.stdout)
    assert found, done.stdout
    assert float(found.group(1)) < float(found.group(2))


def test_the_character_model_writes_text(server):
    done = run(
        "-m",
        "lstmserve",
        "generate",
        "--model",
        "text",
        "--prompt",
        "the ",
        "--steps",
        "40",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--server",
        server.address,
    )
    assert done.stdout.startswith("the ") and len(done.stdout) == 4 + 40 + 1  # prompt, steps, newline
    assert "40 steps generated" in done.stderr and "seed 3" in done.stderr
    speed = run(
        str(REPO / "examples" / "generation_speed.py"),
        "--model",
        "text",
        "--address",
        server.address,
        "--steps",
        "50",
        "--rounds",
        "2",
    )
    assert "same characters: True" in speed.stdout, speed.stdout
