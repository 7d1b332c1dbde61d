import subprocess
import sys

import onnx
import pytest

from lstmserve import contract
from lstmserve.export.errors import ExportError
from lstmserve.export.onnx import metadata
from lstmserve.export.publish import export_checkpoint
from lstmserve.model.errors import CheckpointError


def test_writes_the_next_version_each_time(tiny_checkpoint, tmp_path):
    first = export_checkpoint(tiny_checkpoint, tmp_path, "digits")
    second = export_checkpoint(tiny_checkpoint, tmp_path, "digits")
    assert first.model.path == tmp_path / "digits" / "1" / "model.onnx"
    assert second.model.path == tmp_path / "digits" / "2" / "model.onnx"
    assert first.model.fingerprint == second.model.fingerprint  # same weights, same graph
    model = onnx.load(first.model.path)
    assert metadata(model)[contract.META_FINGERPRINT] == first.model.fingerprint
    assert first.model.verify.max_error <= 1e-5


def test_refuses_an_existing_version_unless_forced(tiny_checkpoint, tmp_path):
    export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3)
    with pytest.raises(ExportError, match=r"digits/3/model.onnx already exists; pass --force"):
        export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3)
    assert export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3, force=True).model.version == 3


def test_int8_is_an_extra_version_with_its_accuracy_and_speed(tiny_checkpoint, tmp_path):
    result = export_checkpoint(tiny_checkpoint, tmp_path, "digits", quantize="int8")
    assert result.int8 is not None and result.int8_report is not None
    assert result.int8.path == tmp_path / "digits" / "2" / "model.onnx"
    model = onnx.load(result.int8.path)
    assert metadata(model)[contract.META_QUANTIZATION] == "int8"
    assert any(node.op_type == "DynamicQuantizeLSTM" for node in model.graph.node)
    assert result.int8.fingerprint != result.model.fingerprint
    report = result.int8_report
    assert report.fp32_accuracy is not None and report.int8_accuracy is not None  # digits test split rebuilt
    assert report.int8_bytes < report.fp32_bytes
    assert set(report.latency_us) == {"batch 1 x time 8", "batch 64 x time 8"}
    assert "test accuracy int8" in report.summary()


def test_nothing_is_written_when_the_checkpoint_is_bad(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError):
        export_checkpoint(bad, tmp_path / "models", "digits")
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "../escape"}, "model name '../escape' must be"),
        ({"name": "digits", "version": 0}, "version must be a positive integer"),
        ({"name": "digits", "quantize": "int4"}, "unknown quantization 'int4'"),
    ],
)
def test_bad_targets_are_named(tiny_checkpoint, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_checkpoint(tiny_checkpoint, tmp_path, **kwargs)


def lstmserve(*args):
    return subprocess.run([sys.executable, "-m", "lstmserve", *args], capture_output=True, text=True)


def test_export_cli(tiny_checkpoint, tmp_path):
    done = lstmserve("export", str(tiny_checkpoint), "--repository", str(tmp_path), "--name", "tiny")
    assert done.returncode == 0, done.stderr
    assert "tiny version 1:" in done.stdout and "verified: 8 checks passed" in done.stderr
    again = lstmserve(
        "export", str(tiny_checkpoint), "--repository", str(tmp_path), "--name", "tiny", "--version", "1"
    )
    assert again.returncode == 2
    assert "already exists; pass --force" in again.stderr and "Traceback" not in again.stderr


def test_export_cli_names_a_missing_checkpoint(tmp_path):
    done = lstmserve("export", str(tmp_path / "none.pt"), "--name", "x", "--repository", str(tmp_path))
    assert done.returncode == 2 and "no such checkpoint file" in done.stderr
