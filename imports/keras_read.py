"""Keras: a `.keras` file (Keras 3) or a legacy `.h5` (Keras 2 or 3) whose layers are LSTMs, stacked with
return_sequences, optionally a Masking layer first and a Dense head last.

The file is read with h5py (keras_file.py): no TensorFlow. Keras' gate order (i, f, c, o) is lstmserve's;
kernel (in, 4H) and recurrent_kernel (H, 4H) are transposed. Layers are judged from the config before
Keras loads the file (keras_check.py): a Lambda or any other layer is refused, never deserialized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lstmserve.model.config import LSTMConfig

from .errors import ImportRefused
from .keras_check import keras_reference
from .keras_file import open_keras, weight_paths
from .source import Imported, LayerWeights, check_chain, check_head

_SKIPPED = {
    "InputLayer",
    "Dropout",
    "SpatialDropout1D",
    "GaussianDropout",
    "GaussianNoise",
    "ActivityRegularization",
}


_RECURRENT = {
    "GRU": "a GRU",
    "SimpleRNN": "a SimpleRNN",
    "Bidirectional": "bidirectional",
    "ConvLSTM1D": "a ConvLSTM",
    "ConvLSTM2D": "a ConvLSTM",
    "RNN": "a generic RNN wrapper",
}


def read_keras(path: Path) -> Imported:
    config, weights, keras_version = open_keras(path)
    layers_config = _layers(path, config)
    input_size, mask_value, lstms, dense = _walk(path, layers_config)
    places = weight_paths(layers_config)
    layers = []
    for name, lstm_config in lstms:
        arrays = weights(name, places.get(name, name))
        use_bias = bool(lstm_config.get("use_bias", True))
        if len(arrays) != 2 + use_bias:
            raise ImportRefused(
                f"{path}: LSTM {name!r} has {len(arrays)} weight arrays, expected kernel, "
                f"recurrent_kernel{' and bias' if use_bias else ''} (use_bias={use_bias})"
            )
        kernel, recurrent = arrays[0], arrays[1]
        if kernel.ndim != 2 or recurrent.ndim != 2:
            raise ImportRefused(
                f"{path}: LSTM {name!r} has kernel {kernel.shape} and recurrent_kernel {recurrent.shape}: "
                "an LSTM's are (input, 4*units) and (units, 4*units)"
            )
        if recurrent.shape[0] != lstm_config["units"]:
            raise ImportRefused(
                f"{path}: LSTM {name!r} says units={lstm_config['units']}, but its recurrent_kernel "
                f"is {recurrent.shape}"
            )
        bias = arrays[2] if use_bias else np.zeros(kernel.shape[1], np.float32)
        layers.append(LayerWeights(kernel.T, recurrent.T, bias))
    if input_size is None:
        input_size = layers[0].weight_ih.shape[1]
    check_chain(layers, input_size, f"{path}")
    head_kind, head_weights, softmax = "none", None, False
    last_returns_sequences = bool(lstms[-1][1].get("return_sequences", False))
    if dense is not None:
        dense_name, dense_config, per_step = dense
        arrays = weights(dense_name, places.get(dense_name, dense_name))
        if len(arrays) not in (1, 2) or arrays[0].ndim != 2:
            raise ImportRefused(
                f"{path}: Dense {dense_name!r} has weights {[a.shape for a in arrays]}, "
                "expected a kernel (units_in, units) and a bias"
            )
        kernel = arrays[0]
        bias = arrays[1] if len(arrays) > 1 else np.zeros(kernel.shape[1], np.float32)
        check_head(kernel.T, bias, layers[-1].hidden, f"{path}: Dense {dense_name!r}")
        head_weights = (kernel.T, bias)
        head_kind = "per_step" if per_step or last_returns_sequences else "classify_last"
        softmax = _activation(dense_config) == "softmax"
    config_out = LSTMConfig(
        input_size=int(input_size),
        hidden_sizes=tuple(int(layer.hidden) for layer in layers),
        head=head_kind,
        num_outputs=int(head_weights[0].shape[0]) if head_weights is not None else 0,
    )
    source: dict[str, Any] = {
        "format": "keras",
        "path": str(path),
        "keras_version": keras_version,
        "lstm": [name for name, _ in lstms],
    }
    notes = [
        f"compared with Keras {keras_version.split('.')[0]}'s own LSTM cells and layers, loaded from the file"
    ]
    if dense is not None:
        source["head"] = dense[0]
    if softmax:
        notes.append(
            f"Dense {dense[0]!r} ends in softmax: lstmserve serves the logits before it "
            "(same argmax; the check compares their softmax with Keras' output)"
        )
    if mask_value is not None:
        source["mask_value"] = mask_value
        notes.append(
            f"Masking(mask_value={mask_value}) becomes sequence_lengths: send each row's real "
            "length instead of padding (padding at the end only, as Keras' masking assumes)"
        )
    imported = Imported(config_out, layers, head_weights, source, lambda feed: {}, notes)
    imported.reference, whole = keras_reference(
        path,
        keras_version,
        [name for name, _ in lstms],
        dense[0] if dense else None,
        config_out,
        softmax,
        last_returns_sequences,
    )
    imported.extra_checks.append(whole)
    return imported


def _layers(path: Path, config: Any) -> list[dict[str, Any]]:
    if not isinstance(config, dict):
        raise ImportRefused(f"{path}: its model config is a JSON {type(config).__name__}, not an object")
    kind = config.get("class_name")
    inner = config.get("config", {})
    if kind not in ("Sequential", "Functional", "Model"):
        raise ImportRefused(f"{path}: a {kind} model: only Sequential and single-chain functional models")
    if kind != "Sequential" or isinstance(inner, dict):  # Keras 2.0 wrote a Sequential's layers bare
        if not isinstance(inner, dict):
            raise ImportRefused(f"{path}: the {kind} model's config is not an object")
        if _several(inner.get("input_layers", [])) or _several(inner.get("output_layers", [])):
            raise ImportRefused(
                f"{path}: a model of several inputs or outputs: only one chain of layers is served"
            )
        inner = inner.get("layers")
    if not isinstance(inner, list) or not all(
        isinstance(layer, dict) and isinstance(layer.get("class_name"), str) for layer in inner
    ):
        raise ImportRefused(f"{path}: the {kind} model's config has no list of layers with class_name")
    for layer in inner:
        if not isinstance(layer.get("config", {}), dict):
            raise ImportRefused(f"{path}: layer {layer['class_name']} has a config that is not an object")
    return inner


def _several(ends: list[Any]) -> bool:
    """A functional model's input_layers or output_layers: one is ["name", 0, 0], several a list of those."""
    return isinstance(ends, list) and bool(ends) and isinstance(ends[0], list) and len(ends) > 1


def _walk(path: Path, layers: list[dict[str, Any]]):
    """(input size, mask value, [(lstm name, config)], (dense name, config, per_step)); None where absent."""
    input_size, mask_value, dense = None, None, None
    lstms: list[tuple[str, dict[str, Any]]] = []
    for index, layer in enumerate(layers):
        kind, config = layer["class_name"], layer.get("config", {})
        name = config.get("name", layer.get("name", f"#{index}"))
        if dense is not None and kind not in _SKIPPED:
            raise ImportRefused(
                f"{path}: layer {name!r} ({kind}) comes after the Dense head: the head must be last"
            )
        if kind == "InputLayer":
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            if shape is not None and not (
                isinstance(shape, list) and shape and (shape[-1] is None or _is_count(shape[-1]))
            ):
                raise ImportRefused(f"{path}: InputLayer {name!r} has batch_shape {shape!r}")
            input_size = shape[-1] if shape and shape[-1] is not None else None
        elif kind in _SKIPPED:
            continue  # identity at inference
        elif kind == "Masking":
            if lstms:
                raise ImportRefused(
                    f"{path}: Masking layer {name!r} is not first: only a Masking before the LSTMs"
                )
            try:
                mask_value = float(config.get("mask_value", 0.0))
            except (TypeError, ValueError):
                raise ImportRefused(
                    f"{path}: Masking {name!r} has mask_value {config.get('mask_value')!r}"
                ) from None
        elif kind == "LSTM":
            _check_lstm(path, name, config)
            if lstms and not lstms[-1][1].get("return_sequences", False):
                raise ImportRefused(
                    f"{path}: LSTM {lstms[-1][0]!r} returns only its last step, but LSTM {name!r} "
                    "follows it: stacked LSTMs need return_sequences=True"
                )
            lstms.append((name, config))
        elif kind in ("Dense", "TimeDistributed"):
            per_step = kind == "TimeDistributed"
            if per_step:
                inner = config.get("layer", {})
                inner = inner if isinstance(inner, dict) else {"class_name": type(inner).__name__}
                if inner.get("class_name") != "Dense" or not isinstance(inner.get("config", {}), dict):
                    raise ImportRefused(
                        f"{path}: TimeDistributed {name!r} wraps {inner.get('class_name')}, "
                        "only a Dense head is served"
                    )
                config = inner.get("config", {})
            if not lstms:
                raise ImportRefused(f"{path}: Dense {name!r} comes before any LSTM")
            activation = _activation(config)
            if activation not in ("linear", "softmax"):
                raise ImportRefused(
                    f"{path}: Dense {name!r} has activation {activation!r}: the head must be "
                    "linear (or softmax, served as its logits)"
                )
            dense = (name, config, per_step)
        elif kind in _RECURRENT:
            raise ImportRefused(
                f"{path}: layer {name!r} is {_RECURRENT[kind]} ({kind}): only forward LSTMs are served"
            )
        else:
            raise ImportRefused(
                f"{path}: layer {name!r} is a {kind}: only Masking, LSTM, Dropout and a last Dense are served"
            )
    if not lstms:
        raise ImportRefused(f"{path}: no LSTM layer in this model")
    return input_size, mask_value, lstms, dense


def _check_lstm(path: Path, name: str, config: dict[str, Any]) -> None:
    units = config.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or units < 1:
        raise ImportRefused(f"{path}: LSTM {name!r} has units={units!r}: needs a positive integer")
    activation, recurrent = _activation(config), _activation(config, "recurrent_activation")
    if activation != "tanh":
        raise ImportRefused(f"{path}: LSTM {name!r} uses activation {activation!r}: only tanh is served")
    if recurrent != "sigmoid":
        raise ImportRefused(
            f"{path}: LSTM {name!r} uses recurrent_activation {recurrent!r}: only sigmoid "
            "is served (Keras before 2.3 defaulted to hard_sigmoid)"
        )
    if config.get("go_backwards"):
        raise ImportRefused(f"{path}: LSTM {name!r} has go_backwards=True: only forward LSTMs are served")
    if config.get("time_major"):
        raise ImportRefused(
            f"{path}: LSTM {name!r} has time_major=True: lstmserve takes (batch, time, features)"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _activation(config: dict[str, Any], key: str = "activation") -> str:
    value = config.get(key, "linear")
    if isinstance(value, dict):  # Keras 3 may serialize {"class_name": "function", "config": "tanh"}
        value = value.get("config", value.get("class_name"))
        value = value.get("name") if isinstance(value, dict) else value
    return str(value)
