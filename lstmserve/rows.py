"""Many chunks' rows as one batch, and back: the one way the server's batcher (server/batcher.py) and
the client's gatherer (client/gathering.py) stack chunks of different lengths into one run, which
lengths may share a run, and how its answer goes back to each chunk. Each side wraps these in its own
form (a feed of ONNX names; an InferRequest).

    chunk a: 2 rows x 3 steps ─┐            ┌ a a a 0     rows 0-1: a's, zero past its 3 steps
                               ├─ stack ──▶ │ a a a 0
    chunk b: 1 row  x 4 steps ─┘            └ b b b b     row 2: b's
                                   split: each chunk's rows back, per-step arrays cut to its steps

Exact because each row runs for its own length only (sequence_lengths: each chunk's own, never the
batch's), so the padding is never run and a row's answer does not depend on its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPREAD = 2  # a batch's longest chunk is at most this many times its shortest


def within_spread(steps: int, other: int) -> bool:
    """Whether chunks of these lengths may share a batch (either order): a one-step chunk never waits
    out a long one's steps, and padding never more than doubles a run. A batch's chunks all may
    when its shortest and longest may."""
    return max(steps, other) <= SPREAD * min(steps, other)


def stack_rows(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Chunks of (rows, steps, features) as one float32 batch, in order, each zero past its own steps."""
    steps = max(chunk.shape[1] for chunk in chunks)
    x = np.zeros((sum(chunk.shape[0] for chunk in chunks), steps, chunks[0].shape[2]), np.float32)
    for rows, chunk in zip(row_slices([chunk.shape[0] for chunk in chunks]), chunks):
        x[rows, : chunk.shape[1]] = chunk  # (batch, time, input_size)
    return x


def stack_lengths(chunks: Sequence[np.ndarray], lengths: Sequence[np.ndarray | None]) -> np.ndarray:
    """The stacked batch's sequence_lengths, (batch,) int32: each chunk's own, or where it has none
    its own steps, so that no row runs into its padding."""
    return np.concatenate(
        [
            np.full(chunk.shape[0], chunk.shape[1], np.int32) if own is None else own
            for chunk, own in zip(chunks, lengths)
        ]
    ).astype(np.int32)


def split_rows(array: np.ndarray, shapes: Sequence[tuple[int, int]], per_step: bool) -> list[np.ndarray]:
    """One array of a batch's answer back as each chunk's, for chunks of (rows, steps) `shapes`: its
    rows and, `per_step` (batch-major, (batch, time, ...)), its own steps. Views, not copies."""
    pieces = [array[rows] for rows in row_slices([rows for rows, _ in shapes])]
    if per_step:
        pieces = [piece[:, :steps] for piece, (_, steps) in zip(pieces, shapes)]
    return pieces


def row_slices(rows: Sequence[int]) -> list[slice]:
    """Where each chunk of `rows` rows lies in the stacked batch."""
    slices, start = [], 0
    for count in rows:
        slices.append(slice(start, start + count))
        start += count
    return slices
