"""One nn.LSTM of a PyTorch state_dict: what torch_lstm.py reads from the file and torch_check.py
rebuilds nn.LSTM modules from (here, so that neither imports the other's type)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .source import LayerWeights


@dataclass
class LSTMGroup:
    """One nn.LSTM of the state_dict: its key prefix, its layers, its own entries (keys unchanged)."""

    prefix: str
    layers: list[LayerWeights]
    tensors: dict[str, np.ndarray]
    has_bias: bool

    @property
    def keys(self) -> set[str]:
        return set(self.tensors)
