"""The soak's referee: onnxruntime in this process on the served file, and the check of an answer.

Each answer is checked on its own: the expected one is computed from the same chunk and the same
incoming state the server had (the state its previous answer returned), so round-off cannot build up
over a long stream and a wrong answer is caught at the call that made it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lstmserve import contract

# The server merges concurrent calls into one padded run, so float32 round-off differs from a run of
# the chunk alone; 1e-5 is the export's own tolerance against PyTorch.
ATOL = 1e-5

Layers = list[tuple[np.ndarray, np.ndarray]]  # per layer (c, h), each (rows, hidden_sizes[l]) float32


class Reference:
    """One onnxruntime session on the model file the server serves, and the model's shape."""

    def __init__(self, path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the soak's streams share this process; one core is plenty
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.input_size = int(inputs[0].shape[2])
        self.hidden_sizes = [int(value.shape[1]) for value in inputs[2::2]]
        self.output_names = [value.name for value in self.session.get_outputs()]
        self.has_logits = contract.LOGITS in self.output_names
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.fingerprint = metadata[contract.META_FINGERPRINT]

    @property
    def state_names(self) -> list[str]:
        """final_c_0, final_h_0, final_c_1, ...: the state's outputs, in the graph's order."""
        return [name for name in self.output_names if name.startswith("final_")]

    def zero_state(self, rows: int) -> Layers:
        return [
            (np.zeros((rows, size), np.float32), np.zeros((rows, size), np.float32))
            for size in self.hidden_sizes
        ]

    def expected(self, chunk: np.ndarray, lengths: np.ndarray | None, state: Layers) -> dict[str, np.ndarray]:
        """Every output for one chunk, (rows, steps, input_size), from `state`; lengths None: full rows."""
        rows, steps, _ = chunk.shape
        feed = {
            contract.INPUT: chunk,
            contract.SEQUENCE_LENGTHS: np.full(rows, steps, np.int32) if lengths is None else lengths,
        }
        for layer, (c, h) in enumerate(state):
            feed[contract.initial_c(layer)] = c
            feed[contract.initial_h(layer)] = h
        return dict(zip(self.output_names, self.session.run(None, feed)))


def layers_from(outputs: dict[str, np.ndarray]) -> Layers:
    """The state in an answer's final_c_l / final_h_l, as the next chunk's incoming state."""
    count = sum(name.startswith("final_c_") for name in outputs)
    return [(outputs[contract.final_c(layer)], outputs[contract.final_h(layer)]) for layer in range(count)]


def differences(
    expected: dict[str, np.ndarray], answer: dict[str, np.ndarray], asked: list[str]
) -> list[str]:
    """What is wrong with an answer (empty when nothing is): asked-for tensors missing, others sent,
    shapes, and values further than ATOL from onnxruntime's (NaN counts as far)."""
    problems = [f"{name} missing" for name in asked if name not in answer]
    problems += [f"{name} sent but not asked for" for name in answer if name not in asked]
    for name in asked:
        if name not in answer:
            continue
        got, want = answer[name], expected[name]
        if got.shape != want.shape:
            problems.append(f"{name} shape {list(got.shape)}, expected {list(want.shape)}")
        # A NaN makes the max NaN, and NaN <= ATOL is False: flagged. (np.allclose costs 4x more.)
        elif not (worst := float(np.max(np.abs(got - want), initial=0.0))) <= ATOL:
            problems.append(f"{name} off by up to {worst:.3g}")
    return problems
