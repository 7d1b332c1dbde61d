"""Read, check against the source framework, then write: the checkpoint, the repository, or both."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lstmserve.errors import LstmServeError
from lstmserve.export import repository as repo
from lstmserve.export.errors import ExportError
from lstmserve.export.onnx import export_model
from lstmserve.export.publish import Published, publish_checkpoint
from lstmserve.export.settings import ExportSettings
from lstmserve.export.verify import verify_export
from lstmserve.model.checkpoint import Checkpoint, save_checkpoint
from lstmserve.model.errors import CheckpointError

from .check import ImportReport, check_import
from .read import read
from .settings import ImportSettings
from .source import to_stack

T = TypeVar("T")


@dataclass
class ImportResult:
    checkpoint: Checkpoint
    report: ImportReport
    published: Published | None = None


def import_model(
    source: str | Path,
    settings: ImportSettings,
    out: str | Path | None = None,
    name: str | None = None,
    repository: str | Path = "models",
    version: int | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> ImportResult:
    """Nothing is written unless the export matches the source framework (ImportCheckFailed)."""
    source = Path(source)
    export = ExportSettings(name, str(repository), version) if name else None  # bad names fail first
    if out is not None and Path(out).exists() and not force:
        raise CheckpointError(f"{out} already exists; pass --force to replace it, or choose another --out")
    if out is not None:
        _can_write(Path(out), "--out", CheckpointError)
    if export is not None:  # publish_checkpoint claims it again; here it fails before the slow work
        root = Path(export.repository)
        claimed = export.version or max(repo.versions(root, export.name), default=0) + 1
        target = repo.model_path(root, export.name, claimed)
        repo.claim(target, force)
        _can_write(target, "the repository's", ExportError)
    imported = read(source, settings)
    config = imported.config
    log(
        f"read {imported.source['format']} model {source}: {config.input_size} inputs, "
        f"layers {list(config.hidden_sizes)}, head {config.head}"
        + (f" ({config.num_outputs} outputs)" if config.num_outputs else "")
    )
    stack = to_stack(imported)
    model = export_model(stack)
    verified = verify_export(model, stack)  # the contract, and chunked == one call
    report = check_import(imported, model)
    log(f"checked: {report.summary()}")
    for note in imported.notes:
        log(f"  {note}")
    checkpoint = Checkpoint(
        stack,
        data={"imported_from": imported.source},
        metrics={"import_check": {"max_scaled_error": report.max_error, "cases": report.cases}},
    )
    result = ImportResult(checkpoint, report)
    existed = out is not None and Path(out).exists()
    try:
        if out is not None:
            _writing(lambda: save_checkpoint(out, checkpoint), CheckpointError)
        if export is not None:
            published = _writing(
                lambda: publish_checkpoint(checkpoint, str(source), export, force, log, (model, verified)),
                ExportError,
            )
            result.published = published.model
    except BaseException:
        if out is not None:  # nothing is left behind by an import that failed
            Path(str(out) + ".tmp").unlink(missing_ok=True)
            if not existed:
                Path(out).unlink(missing_ok=True)
        raise
    return result


def _can_write(target: Path, what: str, error: type[LstmServeError]) -> None:
    """Fail before the slow work where the file cannot be written: a folder in its place, a file where
    a folder must be, a folder that is not writable."""
    if target.is_dir():
        raise error(f"{what} {target} is a folder, not a file")
    folder = next(p for p in (target.parent, *target.parent.parents) if p.exists() or p == p.parent)
    if not folder.is_dir():
        raise error(f"{what} {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"{what} {target}: {folder} is not writable")


def _writing(write: Callable[[], T], error: type[LstmServeError]) -> T:
    try:
        return write()
    except OSError as exc:
        raise error(f"cannot write {exc.filename or ''}: {exc.strerror or exc}") from None
