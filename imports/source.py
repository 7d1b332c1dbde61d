"""Imported: a model read from another framework, as an lstmserve stack plus that framework's own
forward pass, which check.py compares the exported graph with before anything is written.

Every reader converts to PyTorch's layout: per layer W_ih (4H, in), W_hh (4H, H) and one bias, gates
in the order (i, f, g, o), any run-time forget bias folded into the f block (as LSTMStack itself folds
BasicLSTMCell's forget_bias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lstmserve.model.config import LSTMConfig
from lstmserve.model.stack import LSTMStack

from .errors import ImportRefused

# A forward pass of the source framework: the contract's feed (input, sequence_lengths, initial_c_l,
# initial_h_l) -> the contract's outputs, as that framework computes them.
Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

# The key under which a reference returns softmax probabilities instead of logits (a Keras Dense
# with activation="softmax"): check.py compares them with the softmax of the served logits.
PROBABILITIES = "probabilities"


@dataclass
class LayerWeights:
    weight_ih: np.ndarray  # (4H, input)
    weight_hh: np.ndarray  # (4H, H)
    bias: np.ndarray  # (4H,): input and recurrent biases summed, forget bias folded in

    @property
    def hidden(self) -> int:
        return self.weight_hh.shape[1]


@dataclass
class Imported:
    config: LSTMConfig
    layers: list[LayerWeights]
    head: tuple[np.ndarray, np.ndarray] | None  # weight (num_outputs, H_top), bias (num_outputs,)
    source: dict[str, object]  # what was read, saved in the checkpoint: format, path, names
    reference: Reference
    notes: list[str] = field(default_factory=list)  # what the check can and cannot compare
    extra_checks: list[Callable[[Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]], str]] = field(
        default_factory=list
    )  # given the exported graph's runner, check more and return what was checked


def regate(blocks: np.ndarray, order: tuple[int, int, int, int], axis: int) -> np.ndarray:
    """Reorder the four gate blocks along `axis` so that block k of the result is block order[k]."""
    parts = np.split(blocks, 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def check_chain(layers: list[LayerWeights], input_size: int, where: str) -> None:
    """Each layer's input is the previous layer's hidden size, and every block has 4 gates."""
    expected_input = input_size
    for index, layer in enumerate(layers):
        if layer.weight_hh.ndim != 2 or layer.weight_ih.ndim != 2:
            raise ImportRefused(
                f"{where} layer {index}: weights are {tuple(layer.weight_ih.shape)} and "
                f"{tuple(layer.weight_hh.shape)}, an LSTM's are 2-D"
            )
        hidden = layer.hidden
        if hidden == 0 or expected_input == 0:
            raise ImportRefused(
                f"{where} layer {index}: {expected_input} inputs and {hidden} units, both must be >= 1"
            )
        shapes = {
            "input weights": (layer.weight_ih.shape, (4 * hidden, expected_input)),
            "recurrent weights": (layer.weight_hh.shape, (4 * hidden, hidden)),
            "bias": (layer.bias.shape, (4 * hidden,)),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != want:
                raise ImportRefused(f"{where} layer {index}: {name} are {tuple(got)}, an LSTM needs {want}")
        expected_input = hidden
        for name, values in (
            ("input weights", layer.weight_ih),
            ("recurrent weights", layer.weight_hh),
            ("bias", layer.bias),
        ):
            _check_finite(values, f"{where} layer {index}: {name}")


def check_head(weight: np.ndarray, bias: np.ndarray, hidden: int, where: str) -> None:
    """A dense head's weight is (outputs >= 1, hidden), its bias (outputs,), every value finite."""
    if weight.ndim != 2 or weight.shape[0] == 0 or weight.shape[1] != hidden:
        raise ImportRefused(f"{where}: head weight is {tuple(weight.shape)}, needs (outputs, {hidden})")
    if tuple(bias.shape) != (weight.shape[0],):
        raise ImportRefused(f"{where}: head bias is {tuple(bias.shape)}, needs ({weight.shape[0]},)")
    _check_finite(weight, f"{where}: head weight")
    _check_finite(bias, f"{where}: head bias")


def _check_finite(values: np.ndarray, what: str) -> None:
    # A NaN or inf weight would otherwise surface as a puzzling "differs by nan" from the check.
    bad = ~np.isfinite(values)
    if bad.any():
        raise ImportRefused(f"{what} hold {int(bad.sum())} NaN or infinite values: not a trained model's")


def to_stack(imported: Imported) -> LSTMStack:
    """The LSTMStack that computes what the source computes (check.py proves it on the export)."""
    stack = LSTMStack(imported.config)
    state = {}
    for index, layer in enumerate(imported.layers):
        state[f"layers.{index}.weight_ih_l0"] = layer.weight_ih
        state[f"layers.{index}.weight_hh_l0"] = layer.weight_hh
        state[f"layers.{index}.bias_ih_l0"] = layer.bias
        state[f"layers.{index}.bias_hh_l0"] = np.zeros_like(layer.bias)
    if imported.head is not None:
        state["head.weight"], state["head.bias"] = imported.head
    stack.load_state_dict(
        {key: torch.from_numpy(np.ascontiguousarray(value, np.float32)) for key, value in state.items()}
    )
    return stack.eval()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Over the last axis: what a reference's PROBABILITIES are compared with."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
