import hashlib
import subprocess
import sys

import numpy as np
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


def test_the_fingerprint_is_the_hash_of_the_file_less_its_own_entry(tiny_checkpoint, tmp_path):
    """Recomputed here from the file's bytes, without the project's code: sha256 over the serialized
    ModelProto with the fingerprint's metadata_props entry left out, first 16 hex digits."""
    result = export_checkpoint(tiny_checkpoint, tmp_path, "digits", quantize="int8")
    for published in (result.model, result.int8):
        data = published.path.read_bytes()
        kept, entries = strip_fingerprint_entry(data)
        assert entries[contract.META_FINGERPRINT] == published.fingerprint
        assert hashlib.sha256(kept).hexdigest()[:16] == published.fingerprint
        # onnx's view agrees with the byte walk: the same model, less one metadata entry.
        model = onnx.load_from_string(data)
        props = [p for p in model.metadata_props if p.key != contract.META_FINGERPRINT]
        del model.metadata_props[:]
        model.metadata_props.extend(props)
        assert model.SerializeToString(deterministic=True) == kept
    # ...and the hash covers the weights: one changed byte of an initializer changes it.
    model = onnx.load(result.model.path)
    tensor = model.graph.initializer[0]
    tensor.raw_data = bytes([tensor.raw_data[0] ^ 1]) + tensor.raw_data[1:]
    kept, _ = strip_fingerprint_entry(model.SerializeToString())
    assert hashlib.sha256(kept).hexdigest()[:16] != result.model.fingerprint


_METADATA_PROPS = 14  # ModelProto field number (onnx.proto); each entry is a StringStringEntryProto


def strip_fingerprint_entry(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The ModelProto's bytes with the fingerprint's metadata entry cut out, and every entry's
    key -> value: a walk over the top-level protobuf fields, by the wire format alone."""
    kept, entries, at = bytearray(), {}, 0
    while at < len(data):
        start = at
        tag, at = varint(data, at)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, at = varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = varint(data, at)
            at += size
            if field == _METADATA_PROPS:
                key, value = string_pair(data[at - size : at])
                entries[key] = value
                if key == contract.META_FINGERPRINT:
                    continue  # left out of the hash
        else:
            raise AssertionError(f"unexpected wire type {wire} at byte {start}")
        kept += data[start:at]
    return bytes(kept), entries


def string_pair(entry: bytes) -> tuple[str, str]:
    """StringStringEntryProto: key = 1, value = 2, both length-delimited strings."""
    fields, at = {}, 0
    while at < len(entry):
        tag, at = varint(entry, at)
        size, at = varint(entry, at)
        fields[tag >> 3] = entry[at : at + size].decode()
        at += size
    return fields.get(1, ""), fields.get(2, "")


def varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def test_refuses_an_existing_version_unless_forced(tiny_checkpoint, tmp_path):
    export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3)
    with pytest.raises(ExportError, match=r"digits/3/model.onnx already exists; pass --force"):
        export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3)
    assert export_checkpoint(tiny_checkpoint, tmp_path, "digits", version=3, force=True).model.version == 3


# The accuracy int8 may lose: one of the 30 sequences the tiny model's test split holds. Measured on 8
# trainings of it (seeds 0-7): int8 never lost one (it gained one twice; the model is near chance).
INT8_ACCURACY_DROP = 1 / 30 + 1e-9


@pytest.fixture(scope="module")
def int8_export(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return root, export_checkpoint(tiny_checkpoint, root, "digits", quantize="int8")


def test_int8_is_an_extra_version_within_what_its_scales_allow(int8_export):
    root, result = int8_export
    assert result.int8 is not None and result.int8_report is not None
    assert result.int8.path == root / "digits" / "2" / "model.onnx"
    model = onnx.load(result.int8.path)
    assert metadata(model)[contract.META_QUANTIZATION] == "int8"
    assert any(node.op_type == "DynamicQuantizeLSTM" for node in model.graph.node)
    assert result.int8.fingerprint != result.model.fingerprint
    report = result.int8_report
    assert report.fp32_accuracy is not None and report.int8_accuracy is not None  # digits test split rebuilt
    assert report.int8_accuracy >= report.fp32_accuracy - INT8_ACCURACY_DROP, report.summary()
    assert 0 < report.step_error_ratio <= 1, report.summary()  # export/int8_bound.py: derived
    assert report.max_output_error > 0 and report.int8_bytes < report.fp32_bytes  # quantized
    assert set(report.latency_us) == {"batch 1 x time 8", "batch 64 x time 8"}
    assert "test accuracy int8" in report.summary() and report.int8_path in report.summary()


def test_an_int8_version_serves_what_its_file_computes_and_each_step_within_its_bound(int8_export):
    """Over the wire: v2 (int8) answers what its file computes for the same chunk and state (a lone
    call runs alone, so to float round-off); streamed a step per call, each step is within the bound
    its scales give of v1 (fp32) from the same state. Chunked int8 is not one call to round-off: each
    call quantizes its own activations."""
    from lstmserve.client import Client
    from lstmserve.export.int8_bound import Int8StepBound
    from lstmserve.export.verify import run, session
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    root, result = int8_export
    fp32_model, int8_model = onnx.load(result.model.path), onnx.load(result.int8.path)
    fp32, int8, bound = session(fp32_model), session(int8_model), Int8StepBound(fp32_model, int8_model)
    x = np.random.default_rng(11).standard_normal((3, 8, 8)).astype(np.float32)
    server = InProcessServer(Settings(repository=str(root))).start()
    try:
        with Client(server.address, timeout=20) as client:
            assert client.model("digits", 2).quantization == "int8"
            whole = client.infer("digits", x, version=2)
            assert_close(whole, run(int8, feed_of(x)), 1e-6)
            with client.stream("digits", version=2) as stream:
                state = None
                for step in range(8):
                    chunk = x[:, step : step + 1]
                    got = stream.feed(chunk)
                    feed = feed_of(chunk, state)
                    assert_close(got, run(int8, feed), 1e-6)
                    want, limit = run(fp32, feed), bound.bound(chunk, feed)
                    for name in ("logits", "final_c_0", "final_h_0", "final_c_1", "final_h_1"):
                        gap = np.abs(tensor_of(got, name) - want[name])
                        assert (gap <= limit[name] + 1e-5 * (1 + np.abs(want[name]))).all(), (step, name)
                    state = got.state
    finally:
        server.stop()


def feed_of(x, state=None) -> dict:
    """The model's feed for a chunk and a client State (None: zeros), two layers of (16, 8)."""
    feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.full(len(x), x.shape[1], np.int32)}
    for layer, hidden in enumerate((16, 8)):
        c, h = state.layers[layer] if state is not None else (np.zeros((len(x), hidden), np.float32),) * 2
        feed[contract.initial_c(layer)], feed[contract.initial_h(layer)] = c, h
    return feed


def tensor_of(result, name: str) -> np.ndarray:
    if name == contract.LOGITS:
        return result.logits
    layer, part = int(name[-1]), "ch".index(name[6])  # final_c_0 / final_h_1
    return result.state.layers[layer][part]


def assert_close(got, want: dict, tolerance: float) -> None:
    """A client result against the model's outputs: logits and every layer's c and h."""
    for name in ("logits", "final_c_0", "final_h_0", "final_c_1", "final_h_1"):
        np.testing.assert_allclose(tensor_of(got, name), want[name], atol=tolerance, rtol=0, err_msg=name)


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
