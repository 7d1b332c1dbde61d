"""Keras' own forward pass over the file's model, for check.py: the model loaded by Keras (Keras 3 on
the installed backend, or tf_keras for a Keras 2 file), its LSTM cells run with random states and masks,
and the whole model run from zero state.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from lstmserve import contract
from lstmserve.export.verify import scaled_gap

from .check import TOLERANCE
from .errors import ImportCheckFailed, ImportRefused
from .source import PROBABILITIES
from .source import softmax as probabilities


def keras_reference(
    path: Path,
    keras_version: str,
    lstm_names,
    dense_name,
    config,
    softmax: bool,
    last_returns_sequences: bool,
):
    """Keras' forward pass, loaded from the file: its cells with states and masks; and the whole model."""
    keras, tensor, numpy = _keras(keras_version)
    try:
        model = keras.models.load_model(str(path), compile=False)
        lstm_layers = [model.get_layer(name) for name in lstm_names]
        dense = model.get_layer(dense_name) if dense_name else None
    except Exception as exc:  # noqa: BLE001 (what Keras raises on a file it cannot load varies by version)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ImportRefused(f"{path}: Keras cannot load this file ({type(exc).__name__}: {first})") from None
    rnns = [keras.layers.RNN(layer.cell, return_sequences=True, return_state=True) for layer in lstm_layers]

    def forward(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, lengths = tensor(feed[contract.INPUT]), feed[contract.SEQUENCE_LENGTHS]
        mask = tensor(np.arange(feed[contract.INPUT].shape[1])[None, :] < lengths[:, None])
        result: dict[str, np.ndarray] = {}
        for index, rnn in enumerate(rnns):
            initial = [tensor(feed[contract.initial_h(index)]), tensor(feed[contract.initial_c(index)])]
            x, h, c = rnn(x, initial_state=initial, mask=mask)  # Keras' state order: [h, c]
            result[contract.final_c(index)], result[contract.final_h(index)] = numpy(c), numpy(h)
        result[contract.OUTPUT] = numpy(x)
        if dense is not None:
            head = dense(x if config.head == "per_step" else h)
            result[PROBABILITIES if softmax else contract.LOGITS] = numpy(head)
        return result

    def whole(ours) -> str:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((3, 7, config.input_size), dtype=np.float32)
        want = numpy(model(tensor(x), training=False))
        feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.full(3, 7, np.int32)}
        for layer, size in enumerate(config.hidden_sizes):
            feed[contract.initial_c(layer)] = np.zeros((3, size), np.float32)
            feed[contract.initial_h(layer)] = np.zeros((3, size), np.float32)
        got = ours(feed)
        if config.head != "none":
            mine = probabilities(got[contract.LOGITS]) if softmax else got[contract.LOGITS]
        elif last_returns_sequences:
            mine = got[contract.OUTPUT]
        else:
            mine = got[contract.final_h(config.num_layers - 1)]
        gap = scaled_gap(mine, want)
        if mine.shape != want.shape or not gap <= TOLERANCE:
            raise ImportCheckFailed(
                f"the whole Keras model's output differs from the served model's by {gap:.2e}"
            )
        return f"the whole Keras model from zero state (gap {gap:.1e})"

    return forward, whole


def _keras(keras_version: str):
    """(Keras, to its tensors, to numpy): Keras 3 on the installed backend (TensorFlow if present, else
    PyTorch), or tf_keras for a Keras 2 file (Keras 3 cannot load a Keras 2 LSTM: time_major)."""
    if keras_version.startswith("2"):
        if importlib.util.find_spec("tf_keras") is None:
            raise ImportRefused(
                f"a Keras {keras_version} file: checking it needs tf_keras: pip install 'lstmserve[tf]'"
            )
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        import tf_keras

        return tf_keras, tf.convert_to_tensor, lambda value: np.asarray(value.numpy())
    if importlib.util.find_spec("keras") is None:
        raise ImportRefused("checking a Keras model needs Keras 3: pip install 'lstmserve[keras]'")
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        os.environ["KERAS_BACKEND"] = "torch"  # the [train] extra has it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras, keras.ops.convert_to_tensor, lambda value: np.asarray(keras.ops.convert_to_numpy(value))
