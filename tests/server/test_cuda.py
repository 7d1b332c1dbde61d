"""On a GPU: the exported models' CUDA results equal the CPU's, ragged lengths and 0-length rows
included (onnxruntime's CUDA LSTM has had wrong results with mixed lengths: onnxruntime#1400).
Where no GPU is, it skips and says so (the CPU fallback is test_lifecycle's)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from lstmserve.export.onnx import export_model
from lstmserve.export.verify import random_feed, run, scaled_gap
from lstmserve.model.checkpoint import load_checkpoint
from lstmserve.server.runtime import providers_for

from ..conftest import random_checkpoint

TOLERANCE = 1e-4  # scaled by 1 + |value|: cuDNN's LSTM adds in its own order (TF32 is off in ORT)


def _cuda_session(model_bytes: bytes) -> ort.InferenceSession | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    session = ort.InferenceSession(model_bytes, providers=providers_for("cuda"))
    return session if session.get_providers()[0] == "CUDAExecutionProvider" else None


@pytest.mark.skip_ok_in_ci  # CI machines have no GPU; the device tool lends one to some sessions only
@pytest.mark.parametrize(
    "config",
    [
        dict(input_size=8, hidden_sizes=(128,), head="classify_last", num_outputs=10),
        dict(input_size=28, hidden_sizes=(128, 128), head="per_step", num_outputs=5),
    ],
)
def test_cuda_equals_cpu_with_ragged_and_empty_rows(tmp_path, config):
    stack = load_checkpoint(random_checkpoint(tmp_path / "m.pt", 3, **config)).model
    model = export_model(stack).SerializeToString()
    cuda = _cuda_session(model)
    if cuda is None:
        pytest.skip("no CUDA GPU here (onnxruntime has no working CUDA execution provider): not measured")
    cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cases = [random_feed(stack, rows, 9, rng) for rows in (1, 64, 1024)]
    cases.append(random_feed(stack, 8, 9, rng, np.array([0, 1, 9, 4, 0, 7, 9, 2], np.int32)))
    for feed in cases:
        want, got = run(cpu, feed), run(cuda, feed)
        for name in want:
            gap = scaled_gap(got[name], want[name])
            assert gap <= TOLERANCE, (name, feed["input"].shape, gap)
        lengths = feed["sequence_lengths"]
        for row in np.flatnonzero(lengths == 0):  # a 0-length row keeps its state on the GPU too
            np.testing.assert_array_equal(got["final_h_0"][row], feed["initial_h_0"][row])
