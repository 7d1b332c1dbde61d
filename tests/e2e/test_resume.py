"""A stream started on one server process resumes on another from the state the client holds."""

import numpy as np
import pytest

from lstmserve.client import Client, State

from ..conftest import CHARS
from ..servers import ServerProcess


@pytest.mark.parametrize("bidi", [False, True], ids=["unary", "bidi"])
def test_stream_resumes_on_a_second_process_after_the_first_dies(repository, bidi):
    x = np.random.default_rng(11).standard_normal((3, 20, 5)).astype(np.float32)
    first, second = ServerProcess(repository), ServerProcess(repository)
    try:
        with Client(first.address) as client:
            stream = client.stream(CHARS, version=1, bidi=bidi)
            head = [stream.feed(x[:, a:b]).output for a, b in ((0, 4), (4, 11))]
            saved = stream.save()  # e.g. written to the client's own store
            stream.close()
        first.kill()  # a crash: nothing on that server survives
        with Client(second.address) as client:
            resumed = client.stream(CHARS, version=1, state=State.from_bytes(saved), bidi=bidi)
            tail = [resumed.feed(x[:, a:b]).output for a, b in ((11, 12), (12, 20))]
            whole = client.infer(CHARS, x, version=1)
        np.testing.assert_array_equal(np.concatenate(head + tail, axis=1), whole.output)
        assert resumed.state == whole.state
    finally:
        first.kill()
        assert second.terminate() == 0
