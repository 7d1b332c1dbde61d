"""Shared fixtures: a real (tiny) model trained on the real digits data, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A two-layer (16, 8) digits classifier, a few epochs on a few hundred sequences."""
    from lstmserve.model.train import TrainSettings, train, write_outputs

    folder = tmp_path_factory.mktemp("tiny")
    result = train(TrainSettings(hidden_sizes=(16, 8), max_epochs=3, limit=300), progress=False)
    path = folder / "tiny.pt"
    write_outputs(result, path, folder / "tiny.metrics.json")
    return path
