"""Calls whose deadline cannot be met are refused before they cost a batch (issue 23, finding 3)."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lstmserve.client import Client, DeadlineExceededError
from lstmserve.server import deadlines
from lstmserve.server.batcher import Batcher
from lstmserve.server.deadlines import RecentRuns
from lstmserve.server.errors import DeadlineExceeded
from lstmserve.server.repository import ModelRepository
from lstmserve.server.settings import Settings

from ..conftest import CHARS, SLOW
from ..servers import InProcessServer
from .test_batcher import random_feed


def test_a_call_with_no_more_time_than_recent_runs_of_its_size_is_refused(monkeypatch):
    runs = RecentRuns()
    runs.check(0.001, 8, "m:1")  # nothing ran yet: nothing to judge by
    for row_steps, seconds in ((64, 0.030), (16, 0.012), (256, 0.050)):
        runs.ran(row_steps, seconds)
    runs.check(0.013, 16, "m:1")  # more than the fastest run of its size took: it may be met
    with pytest.raises(DeadlineExceeded, match=r"reached m:1 with 11.0 ms left .* take 12.0 ms or more"):
        runs.check(0.011, 64, "m:1")
    # A smaller call than any recent run: those say nothing about how fast it can be.
    runs.check(0.001, 8, "m:1")
    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        runs.check(0.0, 8, "m:1")
    # Runs older than the window are forgotten: a slow spell cannot keep refusing short deadlines.
    now = time.monotonic()
    monkeypatch.setattr(deadlines, "monotonic", lambda: now + deadlines.WINDOW + 1)
    assert runs.fastest(256) == 0.0
    runs.check(0.001, 256, "m:1")


@pytest.fixture(scope="module")
def chars(repository):
    loaded = ModelRepository(repository)
    loaded.load_all()
    return loaded.get(CHARS, 1)


def test_a_request_whose_deadline_passes_in_the_queue_is_refused_and_not_run(chars):
    """The lane is busy (its run waits behind a blocked executor); a request queued behind it with a
    50 ms deadline is refused when its turn comes, without a run; one already late is refused at once."""
    rng = np.random.default_rng(0)
    gate = threading.Event()

    async def main(batcher: Batcher):
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(batcher.run(chars, random_feed(chars, rng, rows=1, time=4)))
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(batcher.run(chars, random_feed(chars, rng), deadline=loop.time() + 0.05))
        await asyncio.sleep(0.1)
        gate.set()  # the first run goes ahead; by then the second's deadline has passed
        await first
        with pytest.raises(DeadlineExceeded, match="deadline passed before its batch ran"):
            await late
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            await batcher.run(chars, random_feed(chars, rng), deadline=loop.time() - 0.001)
        # The first run now bars a call with half its time left (onnxruntime's time: tens of us
        # or more, against the few us between taking the loop's time here and the lane's check).
        fastest = batcher._lanes[chars].runs.fastest(10**9)
        assert fastest > 0
        with pytest.raises(DeadlineExceeded, match=r"runs of its size take .* ms or more"):
            larger = random_feed(chars, rng, rows=3, time=8)  # more row-steps than that run
            await batcher.run(chars, larger, deadline=loop.time() + fastest / 2)

    with ThreadPoolExecutor(1) as executor:
        executor.submit(gate.wait)  # holds the one thread, so the lane's run waits
        batcher = Batcher(executor, max_inline_steps=0)
        asyncio.run(main(batcher))
    assert batcher.requests == 1 and batcher.batches == 1  # the late ones cost no run


def test_the_server_refuses_at_once_a_call_it_cannot_answer_in_time(slow_models):
    """A call with a quarter of the time the same call took before is refused by the server at once
    (its answer could not come in time; the client's own timer has not fired), saying why; with time
    to spare it is answered. 8000 steps of a (512, 512) stack take about a second here."""
    server = InProcessServer(Settings(repository=str(slow_models))).start()
    x = np.random.default_rng(1).standard_normal((1, 8000, 5)).astype(np.float32)
    try:
        with Client(server.address, timeout=60) as client:
            took = []
            for _ in range(2):
                started = time.monotonic()
                client.infer(SLOW, x, version=1, outputs=["state"])
                took.append(time.monotonic() - started)
            client.timeout = min(took) / 4  # the run alone takes nearly all of min(took) here
            refused = r"reached slow:1 with \d+\.\d ms left of its deadline"
            with pytest.raises(DeadlineExceededError, match=refused):
                client.infer(SLOW, x, version=1, outputs=["state"])
            client.timeout = 60
            assert client.infer(SLOW, x, version=1, outputs=["state"]).state is not None
    finally:
        server.stop()
