"""Reading a Keras file, which may be damaged or hostile: the model config and each layer's weights
from a `.keras` zip (config.json, metadata.json, model.weights.h5) or a legacy `.h5`, with h5py only.
Every problem is an ImportRefused naming the file; sizes are checked before anything is read whole.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImportRefused


def open_keras(path: Path):
    """(model config, weights reader, keras version) of a .keras or .h5 file. The reader takes a layer's
    name and its place (`weight_paths`) and returns its arrays in the order Keras saved them."""
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
            # In memory: the weights are read whole anyway, and no temporary file is left behind.
            weights_file = h5py.File(io.BytesIO(_member(path, archive, "model.weights.h5")), "r")
        except OSError as exc:
            raise ImportRefused(f"{path}: its model.weights.h5 is not a readable HDF5 file ({exc})") from None

        def weights(name: str, position: str) -> list[np.ndarray]:
            # Keras 3 files a layer's weights by its place, not its name: layers/lstm, layers/lstm_1, ...
            group = weights_file.get(f"layers/{position}")
            if group is None:
                raise ImportRefused(
                    f"{path}: no weights for layer {name!r} (layers/{position}) in model.weights.h5"
                )
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

    def weights_h5(name: str, position: str) -> list[np.ndarray]:  # a legacy .h5 files them by name
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


def weight_paths(layers: list[dict[str, Any]]) -> dict[str, str]:
    """Each layer's place in a Keras 3 weights file: its class in snake case, numbered from the second
    of that class on, in the model's order (Keras' own naming, whatever the layers are called)."""
    seen: dict[str, int] = {}
    places = {}
    for layer in layers:
        kind = re.sub(r"\W+", "", str(layer.get("class_name", "")))
        kind = re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", kind)).lower()
        count = seen.get(kind, 0)
        seen[kind] = count + 1
        name = layer.get("config", {}).get("name") if isinstance(layer.get("config"), dict) else None
        if isinstance(name, str):
            places[name] = kind if count == 0 else f"{kind}_{count}"
    return places
