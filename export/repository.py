"""Writing the model repository; its layout (names, version folders, paths) is lstmserve.layout's."""

from __future__ import annotations

from pathlib import Path

import onnx

from lstmserve import layout
from lstmserve.layout import versions

from .errors import ExportError

__all__ = ["check_name", "claim", "model_path", "versions", "write_model"]


def check_name(name: str) -> str:
    try:
        return layout.check_name(name)
    except layout.LayoutError as exc:
        raise ExportError(str(exc)) from None


def model_path(repository: Path, name: str, version: int) -> Path:
    try:
        return layout.model_path(repository, name, version)
    except layout.LayoutError as exc:
        raise ExportError(str(exc)) from None


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
