"""Model files that load but fail when run: a real onnxruntime failure, for the error path's tests."""

from pathlib import Path

import numpy as np
import onnx


def fail_unless_rows_of(path: Path, values: int) -> None:
    """Rewrite the model at `path` so that its per-step output is reshaped into rows of `values`: a run
    whose output holds a multiple of `values` numbers works, any other fails inside onnxruntime."""
    model = onnx.load(path)
    for node in model.graph.node:  # what computed and consumed `output` now uses `output_raw`
        node.output[:] = ["output_raw" if name == "output" else name for name in node.output]
        node.input[:] = ["output_raw" if name == "output" else name for name in node.input]
    shape = onnx.numpy_helper.from_array(np.array([-1, values], np.int64), "rows_of")
    model.graph.initializer.append(shape)
    model.graph.node.append(onnx.helper.make_node("Reshape", ["output_raw", "rows_of"], ["output"]))
    onnx.save(model, path)
