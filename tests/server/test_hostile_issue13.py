"""Issue 13, hostile pass on the server: the memory trim's thread and the stop (SIGTERM while trims
run, at once, mid-second and after several) end without a traceback or a logged error."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lstmserve.client import Client

from ..conftest import CHARS
from ..servers import ServerProcess

_SIGNS_OF_TROUBLE = ("Traceback", "Exception", "exception", "Event loop is closed", "ERROR", "CRITICAL")


@pytest.mark.parametrize("serve_seconds", [0.0, 1.0, 2.5])
def test_sigterm_while_the_heap_is_trimmed_stops_cleanly(repository, serve_seconds):
    """Wide calls leave freed blocks for the trim every second (server/memory.py), which runs on a
    thread of the loop's default executor; the stop cancels its task at any moment of it."""
    server = ServerProcess(repository)
    try:
        x = np.random.default_rng(9).standard_normal((256, 64, 5)).astype(np.float32)
        with Client(server.address, coalesce=False) as client:
            end = time.monotonic() + serve_seconds
            client.infer(CHARS, x, version=1)
            while time.monotonic() < end:
                client.infer(CHARS, x, version=1)
    finally:
        code = server.terminate()
    log = "".join(server.log)
    assert code == 0, log
    assert "stopped" in log, log
    assert not [sign for sign in _SIGNS_OF_TROUBLE if sign in log], log
