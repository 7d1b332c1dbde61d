import json

import numpy as np
import pytest
import torch

from lstmserve.model.checkpoint import load_checkpoint
from lstmserve.model.data import load_dataset, split
from lstmserve.model.errors import CheckpointError


def test_tiny_digits_checkpoint_round_trips(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)
    assert checkpoint.config.hidden_sizes == (16, 8) and checkpoint.config.head == "classify_last"
    assert checkpoint.config.labels == tuple("0123456789")
    assert not checkpoint.model.training
    assert checkpoint.data["dataset"] == "digits" and checkpoint.data["seed"] == 0
    metrics = json.loads(tiny_checkpoint.with_name("tiny.metrics.json").read_text())
    assert metrics["epochs_run"] == len(metrics["history"]) <= 3
    assert metrics["test_accuracy"] == checkpoint.metrics["test_accuracy"]
    # Recomputed here: the saved model on the held-out split its data spec rebuilds.
    spec = checkpoint.data
    data, _ = load_dataset(spec["dataset"])
    data = data.subset(np.arange(spec["limit"]))
    test = split(data, None, spec["seed"], spec["val_fraction"], spec["test_fraction"]).test
    assert len(test) == metrics["sizes"]["test"] == 30
    with torch.no_grad():
        logits = checkpoint.model(torch.from_numpy(test.inputs)).logits
    correct = int((logits.argmax(-1).numpy() == test.targets).sum())
    assert metrics["test_accuracy"] == pytest.approx(correct / len(test), abs=1e-12)
    assert correct > 3  # above chance (10 classes: 3 of 30), after 3 epochs on 240 sequences


def test_checkpoint_is_plain_data_loadable_with_weights_only(tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    assert set(payload) == {"format", "config", "state_dict", "data", "metrics"}
    assert isinstance(payload["config"], dict)


def test_checkpoint_that_does_not_match_its_config_is_named(tiny_checkpoint, tmp_path):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["hidden_sizes"] = [16, 12]
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(bad)
    message = str(caught.value)
    assert "weights do not match the checkpoint's config" in message
    assert "layers.1.weight_ih_l0 is (32, 16), config needs (48, 16)" in message


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable lstmserve checkpoint"), (b"PK\x03\x04garbage", "not a readable")],
)
def test_unreadable_checkpoint_is_named(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint_is_named(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable lstmserve checkpoint"):
        load_checkpoint(path)


def test_other_torch_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not an lstmserve checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
