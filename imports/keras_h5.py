"""Keras: a `.keras` file (Keras 3) or a legacy `.h5` (Keras 2 or 3) whose layers are LSTMs, stacked with
return_sequences, optionally a Masking layer first and a Dense head last.

The file is read with h5py (and zipfile): no TensorFlow. The check loads the model with Keras itself
(Keras 3 on whichever backend is installed; a Keras 2 file with tf_keras) and runs its own cells with
random states and masks. Keras' gate order (i, f, c, o) is lstmserve's; kernel (in, 4H) and
recurrent_kernel (H, 4H) are transposed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lstmserve import contract
from lstmserve.model.config import LSTMConfig

from .errors import ImportRefused
from .source import PROBABILITIES, Imported, LayerWeights, check_chain, check_head

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
    config, weights, keras_version = _open(path)
    layers_config = _layers(path, config)
    input_size, mask_value, lstms, dense = _walk(path, layers_config)
    layers = []
    for name, lstm_config in lstms:
        arrays = weights(name)
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
        arrays = weights(dense_name)
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
    imported.reference, whole = _framework(
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


def _open(path: Path):
    """(model config, weights-by-layer-name reader, keras version) of a .keras or .h5 file."""
    try:
        import h5py
    except ImportError:
        raise ImportRefused("reading Keras files needs h5py: pip install 'lstmserve[keras]'") from None
    if zipfile.is_zipfile(path):
        archive = _zip(path)
        if "config.json" not in archive.namelist():
            raise ImportRefused(f"{path}: not a Keras file (a zip without config.json)")
        if "model.weights.h5" not in archive.namelist():
            raise ImportRefused(f"{path}: a Keras zip without model.weights.h5")
        config = _json(path, "config.json", _member(path, archive, "config.json"))
        metadata = (
            _json(path, "metadata.json", _member(path, archive, "metadata.json"))
            if "metadata.json" in archive.namelist()
            else {}
        )
        if not isinstance(metadata, dict):
            raise ImportRefused(f"{path}: metadata.json is a JSON {type(metadata).__name__}, not an object")
        try:
            weights_file = h5py.File(_extract(path, archive, "model.weights.h5"), "r")
        except OSError as exc:
            raise ImportRefused(f"{path}: its model.weights.h5 is not a readable HDF5 file ({exc})") from None

        def weights(name: str) -> list[np.ndarray]:
            group = weights_file.get(f"layers/{name}")
            if group is None:
                raise ImportRefused(f"{path}: no weights for layer {name!r} in model.weights.h5")
            if not isinstance(group, h5py.Group):
                raise ImportRefused(f"{path}: layers/{name} in model.weights.h5 is not a group")
            found: list[tuple[str, np.ndarray]] = []
            group.visititems(
                lambda key, item: (
                    found.append((key, _read_array(path, f"layers/{name}/{key}", item)))
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
            found.sort(key=lambda entry: [int(p) if p.isdigit() else p for p in entry[0].split("/")])
            return [array for _, array in found]

        return config, weights, str(metadata.get("keras_version", "3"))
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ImportRefused(f"{path}: not a readable HDF5 file ({exc})") from None
    if "model_config" not in handle.attrs:
        raise ImportRefused(
            f"{path}: an HDF5 file without a model_config: save the whole model, not only "
            "its weights (model.save)"
        )
    raw = handle.attrs["model_config"]
    if not isinstance(raw, (bytes, str)):
        raise ImportRefused(f"{path}: its model_config is {type(raw).__name__}, not JSON text")
    config = _json(path, "model_config", raw)
    version = handle.attrs.get("keras_version", b"2")
    version = version.decode() if isinstance(version, bytes) else str(version)
    root = handle["model_weights"] if "model_weights" in handle else handle

    def weights_h5(name: str) -> list[np.ndarray]:
        if not isinstance(name, str) or name not in root or not isinstance(root[name], h5py.Group):
            raise ImportRefused(f"{path}: no weights for layer {name!r}")
        group = root[name]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        missing = [n for n in names if n not in group]
        if missing:
            raise ImportRefused(f"{path}: layer {name!r} names weights it does not hold: {missing[0]!r}")
        return [_read_array(path, f"{name}/{n}", group[n]) for n in names]

    return config, weights_h5, version


# What reading a damaged zip raises: a bad header or CRC, a bad deflate stream, a cut-off member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)
# An HDF5 dataset may declare far more values than the file stores (unwritten chunks read as zeros):
# refuse one that would need more memory than this many times its stored bytes.
_MAX_EXPANSION = 64
_MIN_CHECKED_BYTES = 1 << 20


def _zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ImportRefused(f"{path}: a damaged zip ({type(exc).__name__}: {exc})") from None


def _member(path: Path, archive: zipfile.ZipFile, member: str) -> bytes:
    try:
        return archive.read(member)
    except _ZIP_ERRORS as exc:
        raise ImportRefused(
            f"{path}: cannot read {member} from the zip ({type(exc).__name__}: {exc})"
        ) from None


def _json(path: Path, what: str, raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRefused(f"{path}: its {what} is not JSON ({exc})") from None


def _read_array(path: Path, where: str, item: Any) -> np.ndarray:
    """A weight dataset as float32, after checking its kind and size (reading allocates)."""
    if not hasattr(item, "dtype") or not hasattr(item, "id"):
        raise ImportRefused(f"{path}: weights {where} are a {type(item).__name__}, not a dataset")
    if item.dtype.kind not in "fiu":
        raise ImportRefused(f"{path}: weights {where} hold {item.dtype} values, not numbers")
    if item.ndim > 2:
        raise ImportRefused(
            f"{path}: weights {where} are {item.shape}: Dense and LSTM weights are 1-D or 2-D"
        )
    declared, stored = item.size * 4, item.id.get_storage_size()
    if declared > _MIN_CHECKED_BYTES and declared > _MAX_EXPANSION * stored:
        raise ImportRefused(
            f"{path}: weights {where} declare {item.shape} but the file stores {stored} bytes of them"
        )
    try:
        return np.asarray(item, np.float32)
    except OSError as exc:  # a damaged dataset
        raise ImportRefused(f"{path}: cannot read weights {where} ({exc})") from None


def _extract(path: Path, archive: zipfile.ZipFile, member: str) -> str:
    folder = tempfile.mkdtemp(prefix="lstmserve-keras-")
    try:
        return archive.extract(member, folder)
    except _ZIP_ERRORS as exc:
        raise ImportRefused(
            f"{path}: cannot read {member} from the zip ({type(exc).__name__}: {exc})"
        ) from None


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


def _framework(path, keras_version, lstm_names, dense_name, config, softmax, last_returns_sequences):
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
            mine = got[contract.LOGITS]
            if softmax:
                mine = np.exp(mine - mine.max(-1, keepdims=True))
                mine = mine / mine.sum(-1, keepdims=True)
        elif last_returns_sequences:
            mine = got[contract.OUTPUT]
        else:
            mine = got[contract.final_h(config.num_layers - 1)]
        gap = float((np.abs(mine - want) / (1 + np.abs(want))).max())
        if mine.shape != want.shape or not gap <= 1e-5:
            from .errors import ImportCheckFailed

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
