"""Which waiting chunks one gathered call takes (client/gathering.py), without a server: the same
length-spread rule as the server's batcher (lstmserve/rows.py), over the whole call."""

from __future__ import annotations

import numpy as np
import pytest

from lstmserve.client.gathering import ChunkQueue, Gathering, Waiting
from lstmserve.rows import within_spread


def _taken(steps: list[int]) -> tuple[list[int], list[int]]:
    """The steps of the chunks one gathered call takes from a queue holding chunks of `steps` (oldest
    first), and of those left waiting."""
    gathering = Gathering(max_rows=256)
    waiting = [Waiting("chars", 1, (), np.zeros((1, count, 3), np.float32), None, None) for count in steps]
    key = gathering._key(waiting[0])
    assert key is not None
    queue = ChunkQueue(waiting=list(waiting))
    batch = gathering._take(key, queue)
    return [chunk.steps for chunk in batch], [chunk.steps for chunk in queue.waiting]


@pytest.mark.parametrize(
    ("steps", "taken", "left"),
    [
        # 2 and 8 are each within 2x of the oldest, 4, but not of each other: 8 waits.
        ([4, 2, 8, 3], [4, 2, 3], [8]),
        ([3, 1], [3], [1]),  # 3 is past 2 x 1
        ([2, 1, 4], [2, 1], [4]),
        ([5, 10, 6, 5], [5, 10, 6, 5], []),
        ([0, 0, 1], [0, 0], [1]),  # zero-step chunks go together, never with longer ones
    ],
)
def test_a_gathered_call_holds_chunks_within_2x_of_each_other(steps, taken, left):
    assert _taken(steps) == (taken, left)


def test_every_pair_in_a_gathered_call_is_within_the_spread():
    rng = np.random.default_rng(0)
    for _ in range(200):
        taken, _ = _taken([int(count) for count in rng.integers(1, 20, size=8)])
        assert within_spread(min(taken), max(taken))
