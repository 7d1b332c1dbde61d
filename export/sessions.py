"""onnxruntime sessions for the export's checks: one thread, CPU, quiet. No torch here, so the int8
checks (int8_bound.py) also run where only onnxruntime is installed (an emulated ARM, say)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # the checks feed odd shapes on purpose; spare the console
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [output.name for output in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))
