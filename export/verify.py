"""Check an exported graph against the contract and against PyTorch before anyone serves it.

torch 2.13's exporters have frozen a dynamic axis to the example's size before, so the graph runs at
several (batch, time) shapes, (1, 1) included; ragged lengths with 0-length rows; and random
chunkings with the state fed back, which must equal one call over the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from lstmserve import contract
from lstmserve.model.stack import LSTMStack

from .errors import VerificationError
from .sessions import run, session

SHAPES = ((1, 1), (1, 8), (3, 1), (4, 5), (7, 13))  # (batch, time)
# Scaled by 1 + |value| (scaled_gap). onnxruntime's LSTM and PyTorch's add in other orders: a trained
# 256-unit character model's logits of ~50 differed by up to 1.2e-5 scaled; a mapping mistake (a gate,
# a bias, a transposed matrix) differs by tenths.
TOLERANCE = 1e-4


@dataclass
class VerifyReport:
    max_error: float = 0.0  # ORT vs PyTorch, over every output, shape and ragged case (scaled: scaled_gap)
    chunked_error: float = 0.0  # chunked with state fed back vs one call, in ORT (scaled)
    cases: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.cases)} checks passed: max |ORT - PyTorch| {self.max_error:.1e}, "
            f"chunked vs one call {self.chunked_error:.1e}"
        )


def verify_export(
    model: onnx.ModelProto, stack: LSTMStack, tolerance: float | None = TOLERANCE, seed: int = 0
) -> VerifyReport:
    """Raise VerificationError unless the graph follows the contract and matches the stack.

    With tolerance None the numeric gaps are only measured (int8, whose gap depends on the data:
    publish.py judges it by test accuracy instead); the exact semantics are still enforced.
    """
    config = stack.config
    check_signature(model, config.num_layers, config.head != "none")
    sess = session(model)
    rng = np.random.default_rng(seed)
    report = VerifyReport()

    def compare(case: str, feed: dict[str, np.ndarray]) -> None:
        got = run(sess, feed)
        want = _torch_outputs(stack, feed)
        error = max(scaled_gap(got[name], want[name]) for name in want)
        if tolerance is not None and not error <= tolerance:  # NaN fails too
            raise VerificationError(f"{case}: ORT differs from PyTorch by {error:.2e} (> {tolerance:.0e})")
        report.max_error = max(report.max_error, error)
        report.cases.append(case)

    for batch, time in SHAPES:
        compare(f"batch {batch} x time {time}", random_feed(stack, batch, time, rng))

    lengths = np.array([0, 1, 9, 4, 0, 7], dtype=np.int32)
    feed = random_feed(stack, len(lengths), 9, rng, lengths)
    compare(f"ragged lengths {lengths.tolist()}", feed)
    got = run(sess, feed)
    _check_ragged(got, feed, config.num_layers)
    report.cases.append("0-length rows keep their state, outputs zero past each length")

    report.chunked_error = check_chunking(sess, stack, rng, tolerance)
    report.cases.append("random chunkings with the state fed back equal one call")
    return report


def check_signature(model: onnx.ModelProto, num_layers: int, has_logits: bool) -> None:
    """The graph's input and output names, in the contract's order, with dynamic batch (and time)."""
    want_in = contract.input_names(num_layers)
    want_out = contract.output_names(num_layers, has_logits)
    got_in = [value.name for value in model.graph.input]
    got_out = [value.name for value in model.graph.output]
    if got_in != want_in or got_out != want_out:
        raise VerificationError(
            f"graph signature {got_in} -> {got_out}, contract says {want_in} -> {want_out}"
        )
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dynamic = [bool(dim.dim_param) for dim in dims]
        if not dynamic or not dynamic[0]:
            raise VerificationError(f"{value.name}: batch axis is not dynamic ({_dims(dims)})")
        if value.name in (contract.INPUT, contract.OUTPUT) and not dynamic[1]:
            raise VerificationError(f"{value.name}: time axis is not dynamic ({_dims(dims)})")


def check_chunking(sess, stack: LSTMStack, rng: np.random.Generator, tolerance: float | None) -> float:
    """Run one sequence whole and in random chunks (sizes 0 included); return the largest gap."""
    batch, time = 3, 21
    whole = random_feed(stack, batch, time, rng)
    want = run(sess, whole)
    worst = 0.0
    for _ in range(5):
        cuts = np.sort(rng.integers(0, time + 1, size=rng.integers(1, 6)))
        bounds = [0, *cuts.tolist(), time]
        state = {name: value for name, value in whole.items() if name.startswith("initial_")}
        pieces = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            chunk = whole[contract.INPUT][:, start:stop]
            got = run(
                sess,
                {
                    contract.INPUT: chunk,
                    contract.SEQUENCE_LENGTHS: np.full(batch, stop - start, np.int32),
                    **state,
                },
            )
            pieces.append(got[contract.OUTPUT])
            state = {
                name.replace("final_", "initial_"): value
                for name, value in got.items()
                if name.startswith("final_")
            }
        gaps = [scaled_gap(np.concatenate(pieces, axis=1), want[contract.OUTPUT])]
        gaps += [
            scaled_gap(state[name.replace("final_", "initial_")], value)
            for name, value in want.items()
            if name.startswith("final_")
        ]
        largest = float(max(gaps))
        if tolerance is not None and not largest <= tolerance:
            raise VerificationError(
                f"chunking {np.diff(bounds).tolist()} with the state fed back differs from one call "
                f"by {largest:.2e} (> {tolerance:.0e})"
            )
        worst = max(worst, largest)
    return worst


def random_feed(
    stack: LSTMStack, batch: int, time: int, rng: np.random.Generator, lengths: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Random input and non-zero initial state (zeros would hide a state that is ignored)."""
    config = stack.config
    feed = {
        contract.INPUT: rng.standard_normal((batch, time, config.input_size), dtype=np.float32),
        contract.SEQUENCE_LENGTHS: lengths if lengths is not None else np.full(batch, time, np.int32),
    }
    for layer, size in enumerate(config.hidden_sizes):
        feed[contract.initial_c(layer)] = rng.standard_normal((batch, size), dtype=np.float32)
        feed[contract.initial_h(layer)] = np.tanh(rng.standard_normal((batch, size), dtype=np.float32))
    return feed


@torch.no_grad()
def _torch_outputs(stack: LSTMStack, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    num_layers = stack.config.num_layers
    state = [
        (torch.from_numpy(feed[contract.initial_c(layer)]), torch.from_numpy(feed[contract.initial_h(layer)]))
        for layer in range(num_layers)
    ]
    lengths = torch.from_numpy(feed[contract.SEQUENCE_LENGTHS]).long()
    result = stack.eval()(torch.from_numpy(feed[contract.INPUT]), state, lengths)
    outputs = {contract.OUTPUT: result.output.numpy()}
    for layer, (c, h) in enumerate(result.state):
        outputs[contract.final_c(layer)] = c.numpy()
        outputs[contract.final_h(layer)] = h.numpy()
    if result.logits is not None:
        outputs[contract.LOGITS] = result.logits.numpy()
    return outputs


def _check_ragged(got: dict[str, np.ndarray], feed: dict[str, np.ndarray], num_layers: int) -> None:
    lengths = feed[contract.SEQUENCE_LENGTHS]
    for row, length in enumerate(lengths):
        if np.any(got[contract.OUTPUT][row, length:] != 0):
            raise VerificationError(f"row {row} of length {length}: output is not zero past its length")
        if length == 0:
            for layer in range(num_layers):
                for initial, final in (
                    (contract.initial_c(layer), contract.final_c(layer)),
                    (contract.initial_h(layer), contract.final_h(layer)),
                ):
                    if not np.array_equal(got[final][row], feed[initial][row]):
                        raise VerificationError(f"row {row} of length 0: {final} is not its {initial}")


def scaled_gap(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference, scaled by 1 + |value|: float32 rounding grows with the value, and a
    trained model's logits reach tens (a character model's ORT and PyTorch logits of ~15 differed by
    1.3e-5, which is 1e-6 of them). Where either holds NaN or Inf the gap is NaN: no tolerance passes it."""
    with np.errstate(invalid="ignore"):  # inf - inf: NaN is the answer, not a warning
        return float((np.abs(got - want) / (1.0 + np.abs(want))).max(initial=0.0))


def _dims(dims) -> str:
    return "(" + ", ".join(dim.dim_param or str(dim.dim_value) for dim in dims) + ")"
