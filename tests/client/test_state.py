import numpy as np
import pytest

from lstmserve.client import State
from lstmserve.codec import TensorError


def make_state(batch=2, sizes=(4, 3)) -> State:
    rng = np.random.default_rng(0)
    layers = tuple(
        (rng.standard_normal((batch, s), dtype=np.float32), rng.standard_normal((batch, s), dtype=np.float32))
        for s in sizes
    )
    return State("0123456789abcdef", layers)


def test_state_round_trips_through_bytes_exactly():
    state = make_state()
    again = State.from_bytes(state.to_bytes())
    assert again == state and again.batch == 2
    assert again.layers[1][1].dtype == np.float32 and again.layers[1][1].shape == (2, 3)


def test_states_differ_by_value_and_fingerprint():
    state = make_state()
    assert State("ffffffffffffffff", state.layers) != state
    assert make_state(sizes=(4, 2)) != state


def test_damaged_state_bytes_are_refused():
    data = make_state().to_bytes()
    for damaged in (data[:-7], data[:-1], b"\xff" * 10):
        with pytest.raises(TensorError):
            State.from_bytes(damaged)
