"""Dynamic int8 quantization of an exported stack, and what it costs in accuracy and gains in speed.

onnxruntime turns each LSTM node into com.microsoft's DynamicQuantizeLSTM (and the head into
MatMulInteger): int8 weights, one scale per gate row; activations quantized to uint8 per call, with
one scale for the whole input of the call and one per step for h. So an answer depends on what the
call holds: chunked streaming matches one call only to within quantization error, not to float
round-off as fp32 does, and neither does a request merged into a batch match it answered alone.

The weights are kept within +-64 (7 bits, `reduce_range`): on CPUs without VNNI (AVX2, AVX-512BW)
onnxruntime adds pairs of uint8 x int8 products in a saturating int16, and full-range weights
overflowed it, so the same file answered 2-7x further from fp32 there (lstmserve.machine). With
7-bit weights no pair can overflow and every CPU adds the same integers: the answers are the same
bit for bit on AVX2 and AVX-512 VNNI (tests/export/test_int8.py runs both). One scale per row
(`per_channel`) wins back more than the lost bit. The figures: docs/export.md#int8.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lstmserve import contract, machine
from lstmserve.model.data import SequenceData

from .errors import VerificationError
from .int8_bound import INT8_WEIGHT_LIMIT, max_int8_weight, step_error_ratio
from .onnx import set_metadata
from .sessions import run, session


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        fp32_path, int8_path = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, fp32_path)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # it advises a pre-processing pass that changes nothing for LSTMs
        try:
            quantize_dynamic(
                fp32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
            )
        finally:
            root.setLevel(level)
        quantized = onnx.load(int8_path)
    set_metadata(quantized, {contract.META_QUANTIZATION: "int8"})
    return quantized


@dataclass
class QuantizeReport:
    fp32_accuracy: float | None  # on the checkpoint's test split; None where it cannot be rebuilt
    int8_accuracy: float | None
    agreement: float | None  # share of the test split's predictions (argmax) int8 and fp32 share
    fp32_bytes: int
    int8_bytes: int
    max_output_error: float  # |int8 - fp32| over the test split (or random input)
    step_error_ratio: float  # one step from random states: largest |int8 - fp32| / its scales' bound
    int8_path: str  # this CPU's int8 kernels (lstmserve.machine)
    latency_us: dict[str, tuple[float, float]]  # case -> (fp32 p50, int8 p50), one ORT thread

    def summary(self) -> str:
        lines = [
            f"int8 file {self.int8_bytes / 1e3:.0f} kB vs fp32 {self.fp32_bytes / 1e3:.0f} kB; "
            f"max |int8 - fp32| output {self.max_output_error:.1e}",
            f"one step from random states: at most {100 * self.step_error_ratio:.0f}% of the error its "
            f"scales allow (int8 kernels here: {self.int8_path}; 7-bit weights add alike on every CPU)",
        ]
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            change = 100 * (self.int8_accuracy - self.fp32_accuracy)
            lines.append(
                f"test accuracy int8 {100 * self.int8_accuracy:.2f}% vs fp32 "
                f"{100 * self.fp32_accuracy:.2f}% ({change:+.2f} points); "
                f"the same prediction for {100 * (self.agreement or 0):.2f}%"
            )
        for case, (fp32, int8) in self.latency_us.items():
            lines.append(f"{case}: int8 p50 {int8:.0f} us vs fp32 {fp32:.0f} us (x{fp32 / int8:.2f} faster)")
        return "\n".join(lines)


def compare_int8(
    fp32: onnx.ModelProto, int8: onnx.ModelProto, test: SequenceData | None, time_steps: int, input_size: int
) -> QuantizeReport:
    """Measure int8 against fp32; VerificationError where its kernels break what its scales promise."""
    largest = max_int8_weight(int8)
    if largest > INT8_WEIGHT_LIMIT:
        raise VerificationError(
            f"int8 weights reach {largest}: past {INT8_WEIGHT_LIMIT} the int16 sums of CPUs "
            "without VNNI overflow"
        )
    fp32_sess, int8_sess = session(fp32), session(int8)
    rng = np.random.default_rng(0)
    if test is not None:
        inputs, lengths = test.inputs, test.lengths
    else:
        inputs, lengths = rng.standard_normal((256, time_steps, input_size), dtype=np.float32), None
    ratio = step_error_ratio(fp32, int8, rng, inputs if test is not None else None)
    if not ratio <= 1:  # NaN fails too
        raise VerificationError(
            f"one int8 step is {ratio:.1f}x further from fp32 than its scales allow ({machine.int8_path()})"
        )
    fp32_out, int8_out = _outputs(fp32_sess, inputs, lengths), _outputs(int8_sess, inputs, lengths)
    error = float(np.abs(fp32_out[contract.OUTPUT] - int8_out[contract.OUTPUT]).max())
    accuracy: tuple[float | None, float | None] = (None, None)
    agreement = None
    if test is not None and contract.LOGITS in fp32_out:
        accuracy = (_accuracy(fp32_out[contract.LOGITS], test), _accuracy(int8_out[contract.LOGITS], test))
        agreement = _agreement(fp32_out[contract.LOGITS], int8_out[contract.LOGITS], test)
    latency = {}
    for batch in (1, 64):
        x = np.resize(inputs, (batch, *inputs.shape[1:]))  # repeats rows where the test set is smaller
        case = f"batch {batch} x time {x.shape[1]}"
        latency[case] = (_p50_us(fp32_sess, x), _p50_us(int8_sess, x))
    return QuantizeReport(
        *accuracy,
        agreement,
        fp32.ByteSize(),
        int8.ByteSize(),
        error,
        ratio,
        machine.int8_path(),
        latency,
    )


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
    return _share(logits.argmax(-1) == data.targets, data)


def _agreement(fp32: np.ndarray, int8: np.ndarray, data: SequenceData) -> float:
    return _share(fp32.argmax(-1) == int8.argmax(-1), data)


def _share(hits: np.ndarray, data: SequenceData) -> float:
    """The share of true `hits`: per sequence, or per valid step of per-step targets."""
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
