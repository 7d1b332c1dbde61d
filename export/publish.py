"""Checkpoint -> verified ONNX in the model repository (plus an int8 version when asked)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lstmserve import contract
from lstmserve.model.checkpoint import Checkpoint, load_checkpoint
from lstmserve.model.config import LSTMConfig
from lstmserve.model.data import SequenceData, load_dataset, split
from lstmserve.model.errors import DataError

from . import repository
from .errors import ExportError
from .onnx import export_model, metadata, set_metadata
from .quantize import QuantizeReport, compare_int8, quantize_int8
from .settings import ExportSettings
from .verify import VerifyReport, verify_export

QUANTIZATIONS = contract.QUANTIZATIONS[1:]  # "none" is the fp32 export itself


@dataclass
class Published:
    path: Path
    version: int
    fingerprint: str
    verify: VerifyReport


@dataclass
class ExportResult:
    model: Published
    int8: Published | None = None
    int8_report: QuantizeReport | None = None


def export_checkpoint(
    checkpoint_path: str | Path,
    repository_path: str | Path,
    name: str,
    version: int | None = None,
    force: bool = False,
    quantize: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """publish() for Python callers: the settings as arguments."""
    return publish(checkpoint_path, ExportSettings(name, str(repository_path), version, quantize), force, log)


def publish(
    checkpoint_path: str | Path,
    settings: ExportSettings,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """Export, verify and write REPOSITORY/NAME/VERSION/model.onnx; nothing is written if a check fails."""
    return publish_checkpoint(load_checkpoint(checkpoint_path), str(checkpoint_path), settings, force, log)


def publish_checkpoint(
    checkpoint: Checkpoint,
    label: str,
    settings: ExportSettings,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
    exported: tuple[onnx.ModelProto, VerifyReport] | None = None,
) -> ExportResult:
    """publish() for a checkpoint in memory (`lstmserve import`); `label` names it in the log.
    exported: the checkpoint's graph as export_model made it and verify_export passed it, where the
    caller already has both (an import checks that very graph against its framework)."""
    version, path, int8_path = _claim(settings, force)
    log(f"exporting {label} ({_describe(checkpoint)})")
    if exported is None:
        model = export_model(checkpoint.model)
        report = verify_export(model, checkpoint.model)
    else:
        model, report = exported
    if settings.accepts_state_from:
        check_makers(Path(settings.repository), settings.accepts_state_from, checkpoint.config, log)
        set_metadata(model, {contract.META_ACCEPTS_STATE_FROM: json.dumps(list(settings.accepts_state_from))})
    log(f"verified: {report.summary()}")
    result = ExportResult(Published(path, version, metadata(model)[contract.META_FINGERPRINT], report))

    if int8_path is not None:
        # Checked and measured before anything is written: a failure leaves the repository as it was.
        int8 = quantize_int8(model)
        int8_verify = verify_export(int8, checkpoint.model, tolerance=None)
        log(f"verified int8 semantics: {int8_verify.summary()}")
        test = _test_split(checkpoint, log)
        time_steps = test.inputs.shape[1] if test is not None else 16
        result.int8_report = compare_int8(model, int8, test, time_steps, checkpoint.config.input_size)
        int8_fingerprint = metadata(int8)[contract.META_FINGERPRINT]
        result.int8 = Published(int8_path, version + 1, int8_fingerprint, int8_verify)

    repository.write_model(path, model)
    log(f"wrote {path}")
    if result.int8 is not None:
        repository.write_model(result.int8.path, int8)
        log(f"wrote {result.int8.path}")
    return result


def check_makers(root: Path, makers: tuple[str, ...], config: LSTMConfig, log: Callable[[str], None]) -> None:
    """The models whose states this one will take must have its layers: checked against their newest
    version where the repository has one (the server checks again when it loads both)."""
    for maker in makers:
        versions = repository.versions(root, maker)
        if not versions:
            log(f"{maker} is not in {root} yet: its layers are checked when the server loads both")
            continue
        path = repository.model_path(root, maker, max(versions))
        try:
            meta = metadata(onnx.load(str(path), load_external_data=False))
            sizes = tuple(json.loads(meta[contract.META_CONFIG])["hidden_sizes"])
        except Exception as exc:  # noqa: BLE001 (onnx raises its own kinds for a damaged file)
            raise ExportError(
                f"{path}: cannot read its layers to check --accepts-state-from ({exc})"
            ) from None
        if sizes != config.hidden_sizes:
            raise ExportError(
                f"--accepts-state-from {maker}: {maker} v{max(versions)} has layers {list(sizes)}, this "
                f"model {list(config.hidden_sizes)}: a state hands over only between equal layers"
            )
        log(f"takes states from {maker} (v{max(versions)}: layers {list(sizes)}, as its own)")


def _claim(settings: ExportSettings, force: bool) -> tuple[int, Path, Path | None]:
    """The version to write and its path (and the int8 one's): free, or --force."""
    root, name = Path(settings.repository), settings.name
    version = settings.version or max(repository.versions(root, name), default=0) + 1
    path = repository.model_path(root, name, version)
    repository.claim(path, force)
    int8_path = repository.model_path(root, name, version + 1) if settings.quantize else None
    if int8_path is not None:
        repository.claim(int8_path, force)
    return version, path, int8_path


def _test_split(checkpoint: Checkpoint, log: Callable[[str], None]) -> SequenceData | None:
    """Rebuild the checkpoint's seeded test split, to measure what int8 does to accuracy."""
    spec = checkpoint.data
    if "dataset" not in spec:
        return None
    try:
        data, given_test = load_dataset(spec["dataset"], spec.get("data_path"))
    except DataError as exc:
        log(f"accuracy not compared: the training data is not available ({exc})")
        return None
    if spec.get("limit"):
        data = data.subset(np.arange(min(spec["limit"], len(data))))
    return split(data, given_test, spec["seed"], spec["val_fraction"], spec["test_fraction"]).test


def _describe(checkpoint: Checkpoint) -> str:
    config = checkpoint.config
    text = f"{config.input_size} inputs, layers {list(config.hidden_sizes)}, head {config.head}"
    accuracy = checkpoint.metrics.get("test_accuracy")
    return text + (f", test accuracy {100 * accuracy:.2f}%" if accuracy is not None else "")
