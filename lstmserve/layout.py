"""The model repository's layout on disk: REPOSITORY/NAME/VERSION/model.onnx, versions 1, 2, ...

The one statement of what a model name and a version folder are, for the exporter that writes the
repository, the server that serves it and the benchmark that reads it. No onnx, onnxruntime or torch
here: the server image has no torch and the client stays light.

A server given a model name (--model-name, as KServe mounts one model at /mnt/models) reads its root
as that one model instead: ROOT/VERSION/model.onnx, or a bare ROOT/model.onnx as version 1 (a
storageUri often names one file). A folder 1/ beside a bare file is version 1; the bare file is then
skipped, and said to be.

A version folder's name is a version number as `str(version)` writes it: ASCII digits without a
leading zero, at most 18 of them (lstmserve.v1 carries versions as int64), so at least 1. "0", "01",
"1.0", " 1" and "²" (which str.isdigit accepts) are not versions, and a folder so named is skipped;
so is a file named like a version. Each version thus has exactly one folder: "01" beside "1" cannot
make two files claim version 1, and model_path() finds the folder that versions() reported.

A model folder's name follows the same rule the exporter enforces; the server skips other folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .errors import LstmServeError

DEFAULT_REPOSITORY = "models"  # where `make model` exports, `lstmserve serve` and export look by default
MODEL_FILE = "model.onnx"
VERSION_DIGITS = 18  # every version up to 10**18 - 1; more would not fit lstmserve.v1's int64
NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(rf"[1-9][0-9]{{0,{VERSION_DIGITS - 1}}}")  # [0-9], not \d: \d takes "٣"


class LayoutError(LstmServeError, ValueError):
    """A model name or version the repository cannot hold."""


def is_model_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_model_name(name):
        raise LayoutError(f"model name {name!r} must be {NAME_RULE}")
    return name


def version_of(folder_name: str) -> int | None:
    """The version a folder's name stands for, or None when it is not a version folder's name."""
    return int(folder_name) if _VERSION.fullmatch(folder_name) else None


def versions(repository: Path, name: str) -> list[int]:
    """The version folders a model has (whether or not their file is there yet), oldest first."""
    folder = repository / check_name(name)
    if not folder.is_dir():
        return []
    found = ((version_of(entry.name), entry) for entry in folder.iterdir())
    return sorted(version for version, entry in found if version is not None and entry.is_dir())


def model_path(repository: Path, name: str, version: int) -> Path:
    if version_of(str(version)) is None:
        raise LayoutError(
            f"version must be a positive integer of at most {VERSION_DIGITS} digits, got {version}"
        )
    return repository / check_name(name) / str(version) / MODEL_FILE


def scan(repository: Path, model_name: str | None = None) -> Iterator[tuple[str, int, Path]]:
    """(name, version, model file) for every model file in the repository, by name, then version;
    with model_name, for every version of the one model the root holds."""
    if model_name is None:
        yield from sorted(_repository_files(repository))
    else:
        name = check_name(model_name)
        yield from ((name, version, path) for version, path in sorted(_one_model_files(repository).items()))


def holds_repository(root: Path) -> bool:
    """Whether the root holds a model file as a repository does (NAME/VERSION/model.onnx)."""
    return bool(_repository_files(root))


def holds_one_model(root: Path) -> bool:
    """Whether the root holds a model file as one model does (VERSION/model.onnx, or model.onnx)."""
    return bool(_one_model_files(root))


def misplaced(repository: Path, model_name: str | None = None) -> list[Path]:
    """Model files that scan() skips because a folder's name breaks the rules above: a server says so
    rather than leaving someone to wonder why `my model/01/model.onnx` is not served."""
    if model_name is None:
        return sorted(
            path
            for path in repository.glob(f"*/*/{MODEL_FILE}")
            if version_of(path.parent.name) is None or not is_model_name(path.parent.parent.name)
        )
    skipped = [path for path in repository.glob(f"*/{MODEL_FILE}") if version_of(path.parent.name) is None]
    bare = repository / MODEL_FILE
    if bare.is_file() and _one_model_files(repository).get(1) != bare:  # shadowed by folder 1/
        skipped.append(bare)
    return sorted(skipped)


def _repository_files(root: Path) -> list[tuple[str, int, Path]]:
    found = []
    for path in root.glob(f"*/*/{MODEL_FILE}"):
        name, version = path.parent.parent.name, version_of(path.parent.name)
        if version is not None and is_model_name(name):
            found.append((name, version, path))
    return found


def _one_model_files(root: Path) -> dict[int, Path]:
    """version -> model file of the one model a root holds."""
    bare = root / MODEL_FILE
    found = {1: bare} if bare.is_file() else {}
    for path in root.glob(f"*/{MODEL_FILE}"):
        version = version_of(path.parent.name)
        if version is not None:
            found[version] = path  # after the bare file: a folder 1/ is version 1
    return found
