"""The in-process floor: onnxruntime on the same model file, no network, one thread."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lstmserve import contract


def onnxruntime_floor(path: Path, chunk: int, batch: int, repeats: int = 300) -> dict[str, float]:
    """p50 of one run of (batch, chunk) from zero state, and the steps per second that makes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    feed = {
        contract.INPUT: np.random.default_rng(0).random((batch, chunk, inputs[0].shape[2]), dtype=np.float32),
        contract.SEQUENCE_LENGTHS: np.full(batch, chunk, np.int32),
    }
    for value in inputs[2:]:
        feed[value.name] = np.zeros((batch, value.shape[1]), np.float32)
    for _ in range(30):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    p50 = float(np.median(times))
    return {"p50_ms": p50 * 1e3, "steps_per_s": batch * chunk / p50}
