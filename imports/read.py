"""Which framework wrote a file, and the reader for it (each imports its framework only when used)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import ImportRefused
from .settings import ImportSettings
from .source import Imported

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect(path: Path) -> str:
    """tf1, keras or torch, from the file itself; ImportRefused where it cannot tell."""
    if path.is_dir() or path.name.endswith(".index") or Path(str(path) + ".index").is_file():
        return "tf1"
    if not path.is_file():
        raise ImportRefused(
            f"{path}: no such file (a TF1 checkpoint is named by its prefix, e.g. model.ckpt)"
        )
    with path.open("rb") as file:
        head = file.read(8)
    if head == _HDF5_MAGIC:
        return "keras"
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if "config.json" in names and "model.weights.h5" in names:
            return "keras"
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
    raise ImportRefused(f"{path}: cannot tell which framework wrote it: pass --from {{tf1,keras,torch}}")


def read(path: Path, settings: ImportSettings) -> Imported:
    source = settings.source_format or detect(path)
    if source == "torch":
        from .torch_lstm import read_torch

        _only(settings, source, ("head", "prefix"))
        return read_torch(path, settings.head, settings.prefix or None)
    if source == "keras":
        from .keras_read import read_keras

        _only(settings, source, ())
        return read_keras(path)
    from .tf1 import read_tf1

    _only(settings, source, ("head", "scope", "forget_bias", "head_kernel", "head_bias"))
    return read_tf1(path, settings)


def _only(settings: ImportSettings, source: str, allowed: tuple[str, ...]) -> None:
    """A flag meant for another framework is a mistake worth saying, not something to ignore."""
    from dataclasses import fields

    from lstmserve.config import flag_of

    defaults = ImportSettings()
    for field in fields(ImportSettings):
        name = field.name
        if (
            name not in allowed
            and name != "source_format"
            and getattr(settings, name) != getattr(defaults, name)
        ):
            raise ImportRefused(f"{flag_of(settings, name)} does not apply to a {source} model")
