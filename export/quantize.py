"""Dynamic int8 quantization of an exported stack, and what it costs in accuracy and gains in speed.

onnxruntime turns each LSTM node into com.microsoft's DynamicQuantizeLSTM: int8 weights, activations
quantized per call, with one scale for the whole input of the call. So an answer depends on what
the call holds: chunked streaming matches one call only to within quantization error, not to float
round-off as fp32 does, and neither does a request merged into a batch match it answered alone.
Measured on the default digits model (one layer of 128): fed one row at a time, one digit per call,
the logits differ from one call's by up to 1.2e-1 and the per-step output by 4e-2; int8 vs fp32 on
the 180 held-out digits, 8.4e-2 on the output and 1.9e-1 on the logits, the same accuracy. On the
tests' tiny (16, 8) model both are under 1.6e-2 (tests/export/test_publish.py bounds them).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lstmserve import contract
from lstmserve.model.data import SequenceData

from .onnx import set_metadata
from .verify import run, session


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        fp32_path, int8_path = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, fp32_path)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # it advises a pre-processing pass that changes nothing for LSTMs
        try:
            quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        quantized = onnx.load(int8_path)
    set_metadata(quantized, {contract.META_QUANTIZATION: "int8"})
    return quantized


@dataclass
class QuantizeReport:
    fp32_accuracy: float | None  # on the checkpoint's test split; None where it cannot be rebuilt
    int8_accuracy: float | None
    fp32_bytes: int
    int8_bytes: int
    max_output_error: float  # |int8 - fp32| over the test split (or random input)
    latency_us: dict[str, tuple[float, float]]  # case -> (fp32 p50, int8 p50), one ORT thread

    def summary(self) -> str:
        lines = [
            f"int8 file {self.int8_bytes / 1e3:.0f} kB vs fp32 {self.fp32_bytes / 1e3:.0f} kB; "
            f"max |int8 - fp32| output {self.max_output_error:.1e}"
        ]
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            change = 100 * (self.int8_accuracy - self.fp32_accuracy)
            lines.append(
                f"test accuracy int8 {100 * self.int8_accuracy:.2f}% vs fp32 "
                f"{100 * self.fp32_accuracy:.2f}% ({change:+.2f} points)"
            )
        for case, (fp32, int8) in self.latency_us.items():
            lines.append(f"{case}: int8 p50 {int8:.0f} us vs fp32 {fp32:.0f} us (x{fp32 / int8:.2f} faster)")
        return "\n".join(lines)


def compare_int8(
    fp32: onnx.ModelProto, int8: onnx.ModelProto, test: SequenceData | None, time_steps: int, input_size: int
) -> QuantizeReport:
    fp32_sess, int8_sess = session(fp32), session(int8)
    rng = np.random.default_rng(0)
    if test is not None:
        inputs, lengths = test.inputs, test.lengths
    else:
        inputs, lengths = rng.standard_normal((256, time_steps, input_size), dtype=np.float32), None
    fp32_out, int8_out = _outputs(fp32_sess, inputs, lengths), _outputs(int8_sess, inputs, lengths)
    error = float(np.abs(fp32_out[contract.OUTPUT] - int8_out[contract.OUTPUT]).max())
    accuracy: tuple[float | None, float | None] = (None, None)
    if test is not None and contract.LOGITS in fp32_out:
        accuracy = (_accuracy(fp32_out[contract.LOGITS], test), _accuracy(int8_out[contract.LOGITS], test))
    latency = {}
    for batch in (1, 64):
        x = np.resize(inputs, (batch, *inputs.shape[1:]))  # repeats rows where the test set is smaller
        case = f"batch {batch} x time {x.shape[1]}"
        latency[case] = (_p50_us(fp32_sess, x), _p50_us(int8_sess, x))
    return QuantizeReport(accuracy[0], accuracy[1], fp32.ByteSize(), int8.ByteSize(), error, latency)


def _outputs(sess, inputs: np.ndarray, lengths: np.ndarray | None, batch: int = 512) -> dict[str, np.ndarray]:
    """Run a whole data set in batches, with zero state, and stack the results."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(inputs), batch):
        x = inputs[start : start + batch]
        n = np.full(len(x), x.shape[1], np.int32) if lengths is None else lengths[start : start + batch]
        for name, value in run(sess, _zero_state_feed(sess, x, n)).items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


def _zero_state_feed(sess, x: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: lengths.astype(np.int32)}
    for value in sess.get_inputs():
        if value.name.startswith("initial_"):
            feed[value.name] = np.zeros((len(x), value.shape[1]), np.float32)
    return feed


def _accuracy(logits: np.ndarray, data: SequenceData) -> float:
    hits = logits.argmax(-1) == data.targets
    if hits.ndim == 1:
        return float(hits.mean())
    time = data.targets.shape[1]
    lengths = data.lengths if data.lengths is not None else np.full(len(data), time)
    valid = np.arange(time) < lengths[:, None]
    return float(hits[valid].mean())


def _p50_us(sess, x: np.ndarray, repeats: int = 200) -> float:
    feed = _zero_state_feed(sess, x, np.full(len(x), x.shape[1]))
    for _ in range(20):
        sess.run(None, feed)  # warm-up: first runs allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)
