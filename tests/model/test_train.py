import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lstmserve.model.config import LSTMConfig
from lstmserve.model.data import SequenceData
from lstmserve.model.stack import LSTMStack
from lstmserve.model.train import TrainSettings, _train_epoch, evaluate, train

from .idx_files import write_mnist


def _recall_task(n=48, time=16, seed=0) -> SequenceData:
    """Per step, the class is the sign of the first step's input: only a carried state knows it."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((n, time, 1)).astype(np.float32) * 0.1
    first = rng.integers(0, 2, n)
    inputs[:, 0, 0] = np.where(first == 1, 1.0, -1.0)
    return SequenceData(inputs, np.repeat(first[:, None], time, axis=1).astype(np.int64), None)


def test_truncated_bptt_carries_the_state_across_windows():
    # With a learning rate of 0 the weights never move, so the training loss over 4-step windows
    # equals the loss of one pass over the whole sequence only if each window starts from the state
    # the previous one ended in; restarting from zero state would lose the first step's sign.
    data = _recall_task()
    settings = TrainSettings(
        hidden_sizes=(8,), output_keep_prob=1.0, learning_rate=0.0, bptt=4, batch_size=16
    )
    torch.manual_seed(0)
    model = LSTMStack(LSTMConfig(input_size=1, hidden_sizes=(8,), head="per_step", num_outputs=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    windowed = _train_epoch(model.train(), optimizer, data, settings, np.random.default_rng(0))
    whole, _ = evaluate(model, data)
    assert windowed == pytest.approx(whole, abs=1e-5)


def test_stateful_per_step_training_learns_through_windows(tmp_path):
    data = _recall_task(n=256)
    path = tmp_path / "recall.npz"
    np.savez(path, inputs=data.inputs, targets=data.targets)
    settings = TrainSettings(
        dataset="npz",
        data_path=str(path),
        hidden_sizes=(16,),
        bptt=4,
        max_epochs=30,
        output_keep_prob=1.0,
        learning_rate=2e-2,
    )
    result = train(settings, progress=False)
    assert result.checkpoint.config.head == "per_step"
    assert result.metrics["test_accuracy"] > 0.9  # chance is 0.5


def test_mnist_trains_from_idx_files(tmp_path):
    folder = write_mnist(tmp_path / "mnist", n_train=200, n_test=50)
    result = train(
        TrainSettings(dataset="mnist", data_path=str(folder), hidden_sizes=(16,), max_epochs=2),
        progress=False,
    )
    assert result.checkpoint.config.input_size == 28
    assert result.metrics["sizes"] == {"train": 180, "val": 20, "test": 50}  # t10k is the test set


def lstmserve(*args):
    return subprocess.run([sys.executable, "-m", "lstmserve", *args], capture_output=True, text=True)


def test_train_cli_writes_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "c.pt"
    done = lstmserve("train", "--quick", "--no-progress", "--hidden-sizes", "8", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stderr and out.is_file()
    assert json.loads(out.with_suffix(".metrics.json").read_text())["epochs_run"] <= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "cifar"], "unknown data set 'cifar'"),
        (["--dataset", "mnist", "--data-path", "/nonexistent"], "/nonexistent: not a folder"),
        (["--dataset", "npz"], "npz needs --data-path"),
        (["--hidden-sizes", "0"], "hidden_sizes must be positive integers, got [0]"),
        (["--hidden-sizes", "-3", "8"], "hidden_sizes must be positive integers"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "-0.1"], "--lr must be positive, got -0.1"),
        (["--output-keep-prob", "0"], "output_keep_prob must be in (0, 1], got 0.0"),
    ],
)
def test_train_cli_bad_input_is_one_clear_line(tmp_path, args, message):
    done = lstmserve("train", "--no-progress", "--out", str(tmp_path / "c.pt"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_train_cli_refuses_to_overwrite_a_checkpoint_unless_forced(tmp_path):
    out = tmp_path / "kept.pt"
    out.write_bytes(b"precious")
    done = lstmserve("train", "--quick", "--no-progress", "--out", str(out))
    assert done.returncode == 2 and "already exists; pass --force" in done.stderr
    assert out.read_bytes() == b"precious"


def test_train_cli_refuses_empty_hidden_sizes():
    done = lstmserve("train", "--hidden-sizes")
    assert done.returncode == 2 and "expected at least one argument" in done.stderr


def test_a_regression_head_trains_with_mse_and_beats_the_last_value():
    result = train(
        TrainSettings(dataset="sines", hidden_sizes=(16,), max_epochs=8, limit=300), progress=False
    )
    config, metrics = result.checkpoint.config, result.metrics
    assert (config.head, config.loss, config.num_outputs) == ("per_step", "mse", 1)
    assert metrics["test_accuracy"] is None
    assert metrics["test_loss"] < metrics["naive_test_mse"]  # better than "the next value is this one"


@pytest.mark.parametrize(
    ("dataset", "shown", "not_shown"),
    [("sines", "last_value_loss=", "val_acc"), ("digits", "val_acc=", "last_value_loss")],
)
def test_the_progress_bar_shows_figures_the_task_has(dataset, shown, not_shown, capsys):
    """A regression has no accuracy: its bar once showed val_acc=nan; now the last-value baseline."""
    settings = TrainSettings(dataset=dataset, hidden_sizes=(8,), max_epochs=2, limit=100)
    train(settings, progress=True)
    bar = capsys.readouterr().err  # tqdm draws on stderr
    assert "val_loss=" in bar and shown in bar, bar
    assert not_shown not in bar and "nan" not in bar.lower(), bar


def test_mse_needs_a_per_step_head():
    from lstmserve.model.config import LSTMConfig
    from lstmserve.model.errors import ConfigError

    with pytest.raises(ConfigError, match="loss mse \\(a regression\\) needs head per_step"):
        LSTMConfig(input_size=1, head="classify_last", num_outputs=1, loss="mse")
