"""The exported graph against the source framework's own forward pass, before anything is written.

Random inputs and random (non-zero) states, several shapes, ragged lengths with rows of length 0; each
value must agree within 1e-5 scaled by 1 + |value|. Outputs and per-step logits are compared inside
each row's length (past it lstmserve gives zeros, which export/verify.py checks; frameworks differ
there). Chunked with the state fed back equal to one call is export/verify.py's check, which run.py
runs on the same graph first (and publish() again on its own export, with --name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from lstmserve import contract
from lstmserve.export.verify import random_feed, run, session

from .errors import ImportCheckFailed
from .source import PROBABILITIES, Imported, softmax, to_stack

TOLERANCE = 1e-5
SHAPES = ((1, 1), (2, 6), (5, 13))  # (batch, time), every row full
RAGGED = (0, 1, 9, 4, 0, 7)  # lengths of one (6, 9) batch


@dataclass
class ImportReport:
    max_error: float = 0.0  # largest |ours - framework| / (1 + |framework|)
    cases: list[str] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)  # tensor names compared

    def summary(self) -> str:
        return (
            f"{len(self.cases)} checks against the source framework passed "
            f"({', '.join(sorted(set(self.compared)))}): largest scaled gap {self.max_error:.1e}"
        )


def check_import(imported: Imported, model: onnx.ModelProto, seed: int = 0) -> ImportReport:
    sess = session(model)
    stack = to_stack(imported)  # only random_feed's shapes come from it
    rng = np.random.default_rng(seed)
    report = ImportReport()

    def ours(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run(sess, feed)

    cases = [(f"batch {b} x time {t}", random_feed(stack, b, t, rng)) for b, t in SHAPES]
    lengths = np.array(RAGGED, dtype=np.int32)
    cases.append((f"ragged lengths {list(RAGGED)}", random_feed(stack, len(lengths), 9, rng, lengths)))
    for case, feed in cases:
        got, want = ours(feed), imported.reference(feed)
        report.max_error = max(report.max_error, _compare(case, got, want, feed, report))
        report.cases.append(case)
    for extra in imported.extra_checks:
        report.cases.append(extra(ours))
    return report


def _compare(case, got, want, feed, report: ImportReport) -> float:
    lengths = feed[contract.SEQUENCE_LENGTHS]
    worst = 0.0
    for name, expected in want.items():
        actual = got[contract.LOGITS] if name == PROBABILITIES else got[name]
        if name == PROBABILITIES:
            actual = softmax(actual)
        if tuple(actual.shape) != tuple(expected.shape):
            raise ImportCheckFailed(
                f"{case}: {name} is {actual.shape} here, {expected.shape} in the framework"
            )
        inside = _inside(expected, lengths, name)
        gap = np.abs(actual - expected) / (1.0 + np.abs(expected))
        error = float(gap[inside].max(initial=0.0))
        if not error <= TOLERANCE:  # NaN fails too
            at = np.unravel_index(np.argmax(np.where(inside, gap, -1)), gap.shape)
            raise ImportCheckFailed(
                f"{case}: {name} differs from the source framework by {error:.2e} "
                f"(scaled, > {TOLERANCE:.0e}) "
                f"at {tuple(int(i) for i in at)}: {actual[at]:.6g} here, {expected[at]:.6g} there"
            )
        report.compared.append(name)
        worst = max(worst, error)
    return worst


def _inside(values: np.ndarray, lengths: np.ndarray, name: str) -> np.ndarray:
    """Where a value is defined: per-step tensors only inside each row's length."""
    per_step = name == contract.OUTPUT or (name in (contract.LOGITS, PROBABILITIES) and values.ndim == 3)
    if not per_step:
        return np.ones(values.shape, dtype=bool)
    steps = np.arange(values.shape[1])
    mask = steps[None, :] < lengths[:, None]
    return np.broadcast_to(mask[:, :, None], values.shape)
