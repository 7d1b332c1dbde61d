"""The training loop: Adam, gradient clipping, early stopping on validation loss.

Per-step tasks train statefully with truncated BPTT, as the TF tutorials fed the final state back in:
each batch of sequences runs window by window, the state carried across windows and detached, so
gradients span one window while the state spans the whole sequence.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import Checkpoint, save_checkpoint
from .config import LSTMConfig
from .data import SequenceData, load_dataset, split
from .settings import TrainSettings
from .stack import LSTMStack, step_mask


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    metrics: dict[str, Any]


def train(settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Load the data set, train a stack on it and test the best epoch's weights."""
    started = time.perf_counter()
    data, given_test = load_dataset(settings.dataset, settings.data_path)
    if settings.limit:
        data = data.subset(np.arange(min(settings.limit, len(data))))
    splits = split(data, given_test, settings.seed, settings.val_fraction, settings.test_fraction)
    config = LSTMConfig(
        input_size=data.inputs.shape[2],
        hidden_sizes=settings.hidden_sizes,
        input_keep_prob=settings.input_keep_prob,
        output_keep_prob=settings.output_keep_prob,
        forget_bias=settings.forget_bias,
        head=data.head,
        num_outputs=max(data.num_outputs, splits.test.num_outputs),
        labels=data.labels,
        loss=data.loss,
    )
    torch.manual_seed(settings.seed)
    model = LSTMStack(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    rng = np.random.default_rng(settings.seed)

    best_loss, best_epoch, best_weights = math.inf, 0, copy.deepcopy(model.state_dict())
    history = []
    naive_val = naive_mse(splits.val) if config.loss == "mse" else math.nan
    bar = tqdm(range(1, settings.max_epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        train_loss = _train_epoch(model, optimizer, splits.train, settings, rng)
        val_loss, val_accuracy = evaluate(model, splits.val)
        accuracy = None if math.isnan(val_accuracy) else val_accuracy  # a regression has none
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": accuracy}
        )
        bar.set_postfix(progress_figures(train_loss, val_loss, val_accuracy, naive_val))
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, best_weights = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    bar.close()

    model.load_state_dict(best_weights)
    model.eval()
    test_loss, test_accuracy = evaluate(model, splits.test)
    metrics = {
        "dataset": settings.dataset,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "val_loss": best_loss,
        "test_loss": test_loss,
        "test_accuracy": None if math.isnan(test_accuracy) else test_accuracy,
        "train_seconds": round(time.perf_counter() - started, 2),
        "torch_threads": torch.get_num_threads(),
        "history": history,
    }
    if config.loss == "mse":
        metrics["naive_test_mse"] = naive_mse(splits.test)
    data_spec = {
        key: value
        for key, value in asdict(settings).items()
        if key in ("dataset", "data_path", "seed", "val_fraction", "test_fraction", "limit")
    }
    return TrainResult(Checkpoint(model, data_spec, metrics), metrics)


def progress_figures(train_loss: float, val_loss: float, val_accuracy: float, naive_val: float) -> dict:
    """The progress bar's figures: a classifier's accuracy, or for a regression (no accuracy) the
    loss of predicting that the next value is the last, which its val_loss (an MSE) must beat."""
    figures = {"loss": f"{train_loss:.4f}", "val_loss": f"{val_loss:.4f}"}
    if not math.isnan(val_accuracy):
        figures["val_acc"] = f"{val_accuracy:.3f}"
    elif not math.isnan(naive_val):
        figures["last_value_loss"] = f"{naive_val:.4f}"
    return figures


def write_outputs(result: TrainResult, checkpoint_path: str | Path, metrics_path: str | Path) -> None:
    save_checkpoint(checkpoint_path, result.checkpoint)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(result.metrics, indent=2) + "\n")


def _train_epoch(model, optimizer, data: SequenceData, settings: TrainSettings, rng) -> float:
    order = rng.permutation(len(data))
    total, count = 0.0, 0
    for start in range(0, len(order), settings.batch_size):
        batch = data.subset(order[start : start + settings.batch_size])
        inputs, targets, lengths = _tensors(batch)
        if batch.head == "classify_last":
            windows = [(inputs, targets, lengths)]
        else:
            windows = _bptt_windows(inputs, targets, lengths, settings.bptt)
        state = None
        for x, y, n in windows:
            result = model(x, state, n)
            loss = _loss(result.logits, y, n)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
            optimizer.step()
            # Carry the state into the next window but cut the graph: truncated BPTT.
            state = [(c.detach(), h.detach()) for c, h in result.state]
            total, count = total + loss.item() * len(x), count + len(x)
    return total / max(count, 1)


def _bptt_windows(inputs, targets, lengths, bptt: int):
    """Consecutive (input, target, lengths) windows of `bptt` steps over the same rows."""
    time_steps = inputs.shape[1]
    for t0 in range(0, time_steps, bptt):
        width = min(bptt, time_steps - t0)
        window_lengths = None if lengths is None else (lengths - t0).clamp(0, width)
        if window_lengths is not None and not bool((window_lengths > 0).any()):
            break  # every row has ended
        yield inputs[:, t0 : t0 + width], targets[:, t0 : t0 + width], window_lengths


@torch.no_grad()
def evaluate(model: LSTMStack, data: SequenceData, batch_size: int = 512) -> tuple[float, float]:
    """Mean loss and accuracy over a data set (per valid step for per-step tasks); a regression's
    loss is the mean squared error and its accuracy NaN."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    for start in range(0, len(data), batch_size):
        inputs, targets, lengths = _tensors(data.subset(np.arange(start, min(start + batch_size, len(data)))))
        logits = model(inputs, None, lengths).logits
        losses, weight = _weighted_losses(logits, targets, lengths)
        loss_sum += float((losses * weight).sum())
        if not targets.dtype.is_floating_point:  # a regression has no accuracy (NaN)
            correct += float(((logits.argmax(-1) == targets).float() * weight).sum())
        else:
            correct = math.nan
        count += float(weight.sum())
    model.train(was_training)
    return loss_sum / count, correct / count


def naive_mse(data: SequenceData) -> float:
    """A regression's baseline: each step predicts that the next value is the current one."""
    if data.inputs.shape[2] != data.targets.shape[2]:
        return math.nan
    errors = ((data.inputs - data.targets) ** 2).mean(axis=2)
    if data.lengths is not None:
        errors = errors[np.arange(errors.shape[1])[None, :] < data.lengths[:, None]]
    return float(errors.mean())


def _loss(logits, targets, lengths):
    losses, weight = _weighted_losses(logits, targets, lengths)
    return (losses * weight).sum() / weight.sum().clamp(min=1.0)


def _weighted_losses(logits, targets, lengths):
    """Cross-entropy per target (or squared error per step, averaged over its values, for a regression),
    shaped like the targets' steps, and a weight of 1 for every one that counts: all of them, or the
    steps inside each row's length."""
    if targets.dtype.is_floating_point:
        losses = ((logits - targets) ** 2).mean(dim=-1)  # (batch, time)
        weight = torch.ones(losses.shape) if lengths is None else step_mask(lengths, losses.shape[1])
        return losses, weight
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    if lengths is None or logits.dim() == 2:
        weight = torch.ones(targets.shape)
    else:
        weight = step_mask(lengths, targets.shape[1])
    return losses.reshape(targets.shape), weight


def _tensors(data: SequenceData):
    lengths = None if data.lengths is None else torch.from_numpy(data.lengths)
    return torch.from_numpy(data.inputs), torch.from_numpy(data.targets), lengths
