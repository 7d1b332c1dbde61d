"""lstmserve/rows.py, which the server's batcher and the client's gatherer share: stacking chunks and
splitting the answer back loses and mixes nothing, no row runs into its padding, and the length
spread rule is one symmetric rule that keeps padding within 2x. Properties, over random chunks."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from lstmserve.rows import SPREAD, row_slices, split_rows, stack_lengths, stack_rows, within_spread

_FEATURES = st.integers(1, 4)
_STEPS = st.integers(0, 9)


@st.composite
def chunks(draw, most: int = 5) -> list[np.ndarray]:
    """1 to `most` chunks of (rows, steps, features) float32, the same features, no two alike."""
    features, count = draw(_FEATURES), draw(st.integers(1, most))
    shapes = [(draw(st.integers(1, 4)), draw(_STEPS)) for _ in range(count)]
    # Distinct values (never 0), so a row lent to another chunk, or padding let in, would show.
    start = 1
    made = []
    for rows, steps in shapes:
        size = rows * steps * features
        made.append(np.arange(start, start + size, dtype=np.float32).reshape(rows, steps, features))
        start += size
    return made


def _shapes(parts: list[np.ndarray]) -> list[tuple[int, int]]:
    return [part.shape[:2] for part in parts]


@given(chunks())
def test_split_undoes_stack(parts):
    stacked = stack_rows(parts)
    assert stacked.shape == (
        sum(p.shape[0] for p in parts),
        max(p.shape[1] for p in parts),
        parts[0].shape[2],
    )
    assert stacked.dtype == np.float32
    back = split_rows(stacked, _shapes(parts), per_step=True)
    assert len(back) == len(parts)
    for mine, part in zip(back, parts):
        np.testing.assert_array_equal(mine, part)


@given(chunks())
def test_each_chunk_is_zero_past_its_own_steps(parts):
    stacked = stack_rows(parts)
    for rows, part in zip(row_slices([p.shape[0] for p in parts]), parts):
        assert not stacked[rows, part.shape[1] :].any()


@given(chunks(), st.data())
def test_padding_rows_run_for_no_extra_step(parts, data):
    """Each row's length stays within its own chunk's steps: its own lengths as given, else all its
    steps, never the longest chunk's."""
    own = [
        data.draw(st.none() | st.lists(st.integers(0, p.shape[1]), min_size=p.shape[0], max_size=p.shape[0]))
        for p in parts
    ]
    given_lengths = [None if lengths is None else np.array(lengths, np.int64) for lengths in own]
    lengths = stack_lengths(parts, given_lengths)
    assert lengths.dtype == np.int32 and lengths.shape == (sum(p.shape[0] for p in parts),)
    for rows, part, mine in zip(row_slices([p.shape[0] for p in parts]), parts, own):
        expected = np.full(part.shape[0], part.shape[1]) if mine is None else np.array(mine)
        np.testing.assert_array_equal(lengths[rows], expected)
        assert (lengths[rows] <= part.shape[1]).all()


@given(chunks(), st.integers(1, 3))
def test_row_arrays_split_back_whole(parts, width):
    """A state or classify_last logits, (rows, width): each chunk's rows back, nothing cut."""
    arrays = [np.full((p.shape[0], width), index, np.float32) for index, p in enumerate(parts)]
    back = split_rows(np.concatenate(arrays), _shapes(parts), per_step=False)
    for mine, array in zip(back, arrays):
        np.testing.assert_array_equal(mine, array)


@given(st.integers(0, 1000), st.integers(0, 1000))
@example(1, 2)  # the edges: within, just past, and zero steps
@example(1, 3)
@example(3, 7)
@example(0, 1)
def test_the_spread_rule_is_symmetric_and_says_within_2x(a, b):
    assert within_spread(a, b) == within_spread(b, a)
    assert within_spread(a, b) == (max(a, b) <= 2 * min(a, b))
    assert within_spread(a, a)


@given(st.lists(st.integers(1, 1000), min_size=2, max_size=8))
def test_a_batch_within_the_spread_has_every_pair_within_it(lengths):
    """The batcher checks only the shortest and the longest: every pair between is then within too."""
    if within_spread(min(lengths), max(lengths)):
        assert all(within_spread(a, b) for a in lengths for b in lengths)


@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 100)), min_size=1, max_size=8))
@example([(8, 1), (1, 2)])  # many short rows beside one long: the worst case, at the edge
@example([(8, 1), (1, 3)])
def test_padding_never_more_than_doubles_a_batch_within_the_spread(shapes):
    """Rows x steps padded to the longest chunk stay within SPREAD x the steps each row brings."""
    shortest, longest = min(s for _, s in shapes), max(s for _, s in shapes)
    if within_spread(shortest, longest):
        padded = sum(rows for rows, _ in shapes) * longest
        assert padded <= SPREAD * sum(rows * steps for rows, steps in shapes)
