"""The model repository's layout on disk: REPOSITORY/NAME/VERSION/model.onnx, versions 1, 2, ..."""

from __future__ import annotations

import re
from pathlib import Path

import onnx

from .errors import ExportError

MODEL_FILE = "model.onnx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ExportError(
            f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def versions(repository: Path, name: str) -> list[int]:
    """The numbered versions a model has, oldest first."""
    folder = repository / name
    if not folder.is_dir():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir() if entry.is_dir() and entry.name.isdigit())


def model_path(repository: Path, name: str, version: int) -> Path:
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    return repository / check_name(name) / str(version) / MODEL_FILE


def claim(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing model unless forced; called before any slow work."""
    if path.exists() and not force:
        raise ExportError(f"{path} already exists; pass --force to replace it, or pick another --version")


def write_model(path: Path, model: onnx.ModelProto) -> None:
    """Write atomically, so a server polling the repository never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
