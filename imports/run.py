"""Read, check against the source framework, then write: the checkpoint, the repository, or both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    imported = read(source, settings)
    config = imported.config
    log(
        f"read {imported.source['format']} model {source}: {config.input_size} inputs, "
        f"layers {list(config.hidden_sizes)}, head {config.head}"
        + (f" ({config.num_outputs} outputs)" if config.num_outputs else "")
    )
    stack = to_stack(imported)
    model = export_model(stack)
    verify_export(model, stack)  # the contract, and chunked == one call
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
    if out is not None:
        save_checkpoint(out, checkpoint)
    if export is not None:
        result.published = publish_checkpoint(checkpoint, str(source), export, force, log).model
    return result
