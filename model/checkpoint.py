"""Checkpoints are data: the state_dict, the LSTMConfig as a dict, and where the data came from.

Never a pickled module: `torch.load(weights_only=True)` reads them, so loading one runs no code.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import LSTMConfig
from .errors import CheckpointError, ConfigError
from .stack import LSTMStack

FORMAT = "lstmserve-checkpoint/1"


@dataclass
class Checkpoint:
    model: LSTMStack  # in eval mode
    data: dict[str, Any] = field(default_factory=dict)  # dataset, data_path, seed, split fractions
    metrics: dict[str, Any] = field(default_factory=dict)  # test accuracy, timings, history

    @property
    def config(self) -> LSTMConfig:
        return self.model.config


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": checkpoint.config.to_dict(),
        "state_dict": checkpoint.model.state_dict(),
        "data": checkpoint.data,
        "metrics": checkpoint.metrics,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        # torch's own message advises weights_only=False, which would run code from the file: not here.
        raise CheckpointError(f"{path}: not a readable lstmserve checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lstmserve checkpoint (expected format {FORMAT})")
    missing = [key for key in ("config", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        config = LSTMConfig.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad config in checkpoint: {exc}") from None
    model = LSTMStack(config)
    _load_weights(path, model, payload["state_dict"])
    model.eval()
    return Checkpoint(model, payload.get("data", {}), payload.get("metrics", {}))


def _load_weights(path: Path, model: LSTMStack, state_dict: dict[str, torch.Tensor]) -> None:
    """load_state_dict, with every mismatch against the config named in one message."""
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state_dict]
    problems += [f"unexpected {key}" for key in state_dict if key not in expected]
    problems += [
        f"{key} is {tuple(value.shape)}, config needs {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != tuple(expected[key].shape)
    ]
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise CheckpointError(f"{path}: weights do not match the checkpoint's config: {shown}")
    model.load_state_dict(state_dict)
