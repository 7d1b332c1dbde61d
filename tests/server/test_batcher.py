"""Batching is exact: a request's answer does not depend on what it was merged with."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lstmserve import contract
from lstmserve.server.batcher import Batcher, Observer, merge, split
from lstmserve.server.errors import ResourceExhausted
from lstmserve.server.repository import ModelRepository

from ..conftest import CHARS, DIGITS


@pytest.fixture(scope="module")
def models(repository):
    loaded = ModelRepository(repository)
    loaded.load_all()
    return loaded


def random_feed(runtime, rng, rows=None, time=None, zero_length_rows=True):
    config = runtime.info.config
    rows = rows if rows is not None else int(rng.integers(1, 4))
    time = time if time is not None else int(rng.integers(1, 12))
    lengths = rng.integers(0 if zero_length_rows else time, time + 1, rows).astype(np.int32)
    feed = {
        contract.INPUT: rng.standard_normal((rows, time, config.input_size), dtype=np.float32),
        contract.SEQUENCE_LENGTHS: lengths,
    }
    for layer, size in enumerate(config.hidden_sizes):
        feed[contract.initial_c(layer)] = rng.standard_normal((rows, size), dtype=np.float32)
        feed[contract.initial_h(layer)] = np.tanh(rng.standard_normal((rows, size), dtype=np.float32))
    return feed


@pytest.mark.parametrize("name", [CHARS, DIGITS])
def test_merged_run_split_back_equals_each_run_alone(models, name):
    runtime = models.get(name, 1)
    rng = np.random.default_rng(0)
    feeds = [random_feed(runtime, rng) for _ in range(12)]
    feeds += [random_feed(runtime, rng, rows=2, time=1), random_feed(runtime, rng, rows=1, time=0)]
    together = split(runtime.run(merge(feeds)), [f[contract.INPUT].shape[:2] for f in feeds])
    for feed, got in zip(feeds, together):
        alone = runtime.run(feed)
        assert got.keys() == alone.keys()
        for key in alone:
            assert got[key].shape == alone[key].shape, key
            np.testing.assert_allclose(got[key], alone[key], atol=1e-6, rtol=0, err_msg=key)


def run_all(batcher, runtime, feeds):
    async def main():
        return await asyncio.gather(*(batcher.run(runtime, f) for f in feeds), return_exceptions=True)

    return asyncio.run(main())


class GatedExecutor(ThreadPoolExecutor):
    """A real executor whose runs start only once the gate opens: the test decides when a batch ends."""

    def __init__(self):
        super().__init__(1)
        self.gate = threading.Event()
        self.started = threading.Event()  # a run is waiting at the gate
        self.running: list = []  # the input feeds of the batch being run, for a test to look at
        self.finished: list[list] = []  # ...and of each batch that ran to its end, in turn

    def submit(self, fn, /, *args, **kwargs):
        def gated():
            feeds = [item.feed for item in args[0]] if args and isinstance(args[0], list) else []
            self.running = feeds
            self.started.set()
            assert self.gate.wait(30), "the test never opened the gate"
            result = fn(*args, **kwargs)
            self.finished.append(feeds)
            return result

        return super().submit(gated)


async def until(predicate, seconds=10.0):
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


def is_batch(feeds: list, feed) -> bool:
    """`feeds` is one batch holding just `feed` (the very dict, not an equal one)."""
    return len(feeds) == 1 and feeds[0] is feed


def lane_of(batcher, runtime):
    return batcher._lanes[runtime]


def behind_a_held_run(batcher, executor, runtime, blocker, feeds) -> list:
    """Every call's answer (or exception), the blocker's first: `blocker` runs, held at the gate of
    a GatedExecutor, while `feeds` arrive, so they find the lane busy on any machine; then it ends.
    (Sent together with no run held, a call finds the lane busy only if it comes within _BUSY_WINDOW,
    0.25 ms, of the last run's end: 7 us here, but a loaded 2-core machine missed it 6 times in 2000.)
    `blocker` must leave the event loop: over max_inline_steps rows x steps."""

    def settled(feed, task) -> bool:  # queued behind the blocker, or refused at once
        return task.done() or any(item.feed is feed for item in lane_of(batcher, runtime).waiting)

    async def main():
        head = asyncio.ensure_future(batcher.run(runtime, blocker))
        await until(executor.started.is_set)
        tasks = [asyncio.ensure_future(batcher.run(runtime, feed)) for feed in feeds]
        await until(lambda: all(settled(feed, task) for feed, task in zip(feeds, tasks)))
        executor.gate.set()
        return await asyncio.gather(head, *tasks, return_exceptions=True)

    return asyncio.run(asyncio.wait_for(main(), 30))


class Runs(Observer):
    def __init__(self):
        self.sizes = []

    def ran(self, runtime, requests, rows, seconds):
        self.sizes.append(requests)


def test_concurrent_requests_are_merged_and_each_gets_its_own_answer(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(1)
    feeds = [random_feed(runtime, rng) for _ in range(40)]
    runs = Runs()
    with GatedExecutor() as executor:
        batcher = Batcher(executor, max_batch_rows=64, observer=runs)  # small runs inline, as served
        blocker = random_feed(runtime, rng, rows=1, time=batcher.max_inline_steps + 1)  # leaves the loop
        results = behind_a_held_run(batcher, executor, runtime, blocker, feeds)[1:]
    assert runs.sizes[0] == 1 and sum(runs.sizes[1:]) == 40
    assert len(runs.sizes[1:]) < 40  # merged, not one run each
    for feed, got in zip(feeds, results):
        alone = runtime.run(feed)
        for key in alone:
            np.testing.assert_allclose(got[key], alone[key], atol=1e-6, rtol=0)


def test_requests_that_arrive_while_a_batch_runs_wait_together(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(2)
    feeds = [random_feed(runtime, rng, rows=1, time=5) for _ in range(16)]
    runs = Runs()
    with GatedExecutor() as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.05, max_inline_steps=0, observer=runs)
        behind_a_held_run(batcher, executor, runtime, feeds[0], feeds[1:])
    # The first finds the lane idle and runs at once; the rest arrive while it is busy and wait together.
    assert runs.sizes == [1, 15] and batcher.requests == 16


def test_max_batch_rows_caps_a_batch_and_zero_turns_batching_off(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(3)
    feeds = [random_feed(runtime, rng, rows=3) for _ in range(8)]
    with GatedExecutor() as executor:
        capped = Batcher(executor, max_batch_rows=6, max_delay=0.05, max_inline_steps=0)
        behind_a_held_run(capped, executor, runtime, feeds[0], feeds[1:])
        off = Batcher(executor, max_batch_rows=0)
        run_all(off, runtime, feeds)
    assert capped.batches == 5  # the first alone, then two requests of 3 rows per run
    assert off.batches == off.requests == 8


def test_a_full_queue_refuses_at_once(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(4)
    feeds = [random_feed(runtime, rng, rows=1) for _ in range(10)]
    with GatedExecutor() as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.01, max_queue_rows=4, max_inline_steps=0)
        results = behind_a_held_run(batcher, executor, runtime, feeds[0], feeds[1:])
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    answered = [r for r in results if isinstance(r, dict)]
    # The first runs at once; four queue behind it; the other five are refused.
    assert len(answered) == 5 and len(refused) == 5
    assert "chars v1 has 4 rows queued (--max-queue-rows 4)" in str(refused[0])
    assert refused[0].limit == "max_queue_rows"


def test_queue_full_over_grpc_is_resource_exhausted_and_the_server_recovers(repository):
    import grpc

    from lstmserve.client import Client, ResourceExhaustedError
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    server = InProcessServer(
        Settings(repository=str(repository), max_queue_rows=3, max_request_rows=2, inference_threads=1)
    ).start()
    try:
        x = np.random.default_rng(5).standard_normal((2, 400, 5)).astype(np.float32)
        # Separate calls (coalesce=False): the server's queue is under test, not the client's gathering.
        with Client(server.address, coalesce=False) as client, ThreadPoolExecutor(16) as pool:

            def call(_):
                try:
                    return client.infer(CHARS, x, version=1).output
                except ResourceExhaustedError as exc:
                    return exc

            results = list(pool.map(call, range(32)))
            refused = [r for r in results if isinstance(r, ResourceExhaustedError)]
            assert refused and refused[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rows queued (--max-queue-rows 3)" in refused[0].details
            assert refused[0].limit == "max_queue_rows"  # from the trailing metadata
            want = client.infer(CHARS, x, version=1).output  # still serving
            for r in results:
                if not isinstance(r, ResourceExhaustedError):
                    np.testing.assert_allclose(r, want, atol=1e-6, rtol=0)
    finally:
        server.stop()


@pytest.mark.parametrize("inline_steps", [0, 10_000], ids=["on the executor", "on the event loop"])
def test_both_run_paths_answer_the_same(models, inline_steps):
    runtime = models.get(DIGITS, 1)
    rng = np.random.default_rng(6)
    feeds = [random_feed(runtime, rng, time=6) for _ in range(12)]
    blocker = random_feed(runtime, rng, rows=1, time=inline_steps + 1)  # a run that leaves the loop
    runs = Runs()
    with GatedExecutor() as executor:
        batcher = Batcher(executor, max_delay=0.01, max_inline_steps=inline_steps, observer=runs)
        results = behind_a_held_run(batcher, executor, runtime, blocker, feeds)[1:]
    assert runs.sizes == [1, 12]  # merged behind the blocker...
    ran_on_the_executor = [len(batch) for batch in executor.finished]
    assert ran_on_the_executor == ([1, 12] if inline_steps == 0 else [1])  # ...on the path under test
    for feed, got in zip(feeds, results):
        np.testing.assert_allclose(
            got[contract.LOGITS], runtime.run(feed)[contract.LOGITS], atol=1e-6, rtol=0
        )


async def answered_at_once(batcher, runtime, feed):
    """A new call on the lane is answered: nothing was left wedged. (A wedged lane never answers; the
    bound only ends the wait. One small run takes ms, so 10 s holds on a loaded machine too.)"""
    got = await asyncio.wait_for(batcher.run(runtime, feed), 10.0)
    np.testing.assert_allclose(got[contract.OUTPUT], runtime.run(feed)[contract.OUTPUT], atol=1e-6, rtol=0)


CANCEL_POINTS = ["while queued", "while its batch runs", "while its batch gathers", "as the lane hands on"]


@pytest.mark.parametrize("point", CANCEL_POINTS)
def test_a_cancelled_caller_never_wedges_the_lane(models, point):
    """Finding 1 of issue 10, made deterministic: cancel a caller at each point of a batch's life; the
    others are answered, its rows leave the queue, and the lane goes idle and serves again at once.
    ("as the lane hands on" wedged the previous batcher for good, from then on refusing every call
    as "rows queued": the caller handed the lead was cancelled before it woke up to take it.)"""
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(7)
    feeds = [random_feed(runtime, rng, rows=1, time=4) for _ in range(5)]

    def queued(feed) -> bool:
        return any(item.feed is feed for item in lane_of(batcher, runtime).waiting)

    async def main(batcher, executor):
        if point == "while its batch gathers":
            head = asyncio.ensure_future(batcher.run(runtime, feeds[0]))
            await until(executor.started.is_set)
            victim = asyncio.ensure_future(batcher.run(runtime, feeds[1]))
            await until(lambda: lane_of(batcher, runtime).queued_rows == 1)
            lane, seen = lane_of(batcher, runtime), {}
            gather = lane._gather

            async def cancelled_while_gathering(loop):
                # The lane has just run, so its worker gathers company for the victim's batch, a loop
                # turn at a time: one batch ran, the worker is on, the victim still waits in the queue.
                seen.update(batches=batcher.batches, queued=queued(feeds[1]), done=victim.done())
                victim.cancel()
                await gather(loop)

            lane._gather = cancelled_while_gathering
            executor.gate.set()
            await head
            assert seen == {"batches": 1, "queued": True, "done": False}
            others = [head, asyncio.ensure_future(batcher.run(runtime, feeds[2]))]
        else:
            head = asyncio.ensure_future(batcher.run(runtime, feeds[0]))
            await until(executor.started.is_set)  # its batch runs, held at the gate
            waiting = [asyncio.ensure_future(batcher.run(runtime, f)) for f in feeds[1:4]]
            await until(lambda: lane_of(batcher, runtime).queued_rows == 3)
            assert batcher.batches == 0 and not executor.gate.is_set()  # nothing has finished yet
            if point == "while queued":
                victim, others = waiting[0], [head, *waiting[1:]]
                assert queued(feeds[1]) and not victim.done()
                victim.cancel()
            elif point == "while its batch runs":
                victim, others = head, waiting
                # Its batch has started: taken from the queue, handed to the executor, still running.
                assert not queued(feeds[0]) and is_batch(executor.running, feeds[0]) and not victim.done()
                victim.cancel()
            else:  # as the running batch is answered, the next caller in line goes away
                victim, others = waiting[0], [head, *waiting[1:]]
                observer.cancel_on_next_run = victim
            executor.gate.set()
        results = await asyncio.gather(*others)
        with pytest.raises(asyncio.CancelledError):
            await victim
        if point == "as the lane hands on":
            assert observer.cancel_on_next_run is None and observer.cancelled_after == 1  # one batch ran
        if point == "while its batch runs":
            assert is_batch(executor.finished[0], feeds[0])  # the victim's batch ran to its end, unread
        lane = lane_of(batcher, runtime)
        await until(lambda: lane.worker is None)
        assert lane.queued_rows == 0 and not lane.waiting
        await answered_at_once(batcher, runtime, feeds[4])
        return results

    observer = CancelOnRun()
    with GatedExecutor() as executor:
        batcher = Batcher(executor, max_batch_rows=2, max_delay=0.2, max_inline_steps=0, observer=observer)
        results = asyncio.run(asyncio.wait_for(main(batcher, executor), 30))
    assert all(isinstance(got, dict) for got in results)


class CancelOnRun(Observer):
    """Cancels a task the moment a batch's answers are handed out, before any waiting caller resumes:
    the window in which the old batcher passed its lead to a caller that then never woke to take it."""

    cancel_on_next_run: asyncio.Task | None = None
    cancelled_after: int | None = None  # how many runs had ended when it cancelled
    runs = 0

    def ran(self, runtime, requests, rows, seconds):
        self.runs += 1
        if self.cancel_on_next_run is not None:
            asyncio.get_running_loop().call_soon(self.cancel_on_next_run.cancel)
            self.cancel_on_next_run, self.cancelled_after = None, self.runs


def test_random_cancellations_leave_the_lane_clean(models):
    """Many callers, random sizes, random cancellations at random moments: every caller still there
    gets its own answer, and afterwards nothing is queued and the lane serves at once."""
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(8)

    async def main(batcher):
        for _round in range(20):
            feeds = [
                random_feed(runtime, rng, rows=int(rng.integers(1, 3)), time=int(rng.integers(1, 9)))
                for _ in range(12)
            ]
            tasks = [asyncio.ensure_future(batcher.run(runtime, f)) for f in feeds]
            doomed = set(rng.choice(12, size=int(rng.integers(0, 8)), replace=False).tolist())
            for index in sorted(doomed):
                await asyncio.sleep(float(rng.uniform(0, 0.004)))
                tasks[index].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for index, (feed, got) in enumerate(zip(feeds, results)):
                if isinstance(got, asyncio.CancelledError):
                    assert index in doomed
                    continue
                np.testing.assert_allclose(
                    got[contract.OUTPUT], runtime.run(feed)[contract.OUTPUT], atol=1e-6, rtol=0
                )
            await until(lambda: lane_of(batcher, runtime).worker is None)
            assert lane_of(batcher, runtime).queued_rows == 0 and not lane_of(batcher, runtime).waiting
        await answered_at_once(batcher, runtime, random_feed(runtime, rng))

    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(executor, max_batch_rows=8, max_delay=0.002, max_inline_steps=8)
        asyncio.run(asyncio.wait_for(main(batcher), 60))


def test_short_chunks_are_not_padded_into_long_batches(models):
    """Chunks merge only within 2x of each other's length and within max_batch_row_steps padded."""
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(9)
    # Queued behind a held run, in this order: lengths 1, 100, 2, 60, 1 and two of 50 that together
    # exceed the row-steps cap.
    times = [1, 100, 2, 60, 1, 50, 50]
    feeds = [random_feed(runtime, rng, rows=1, time=t) for t in times]

    async def main(batcher, executor):
        blocker = asyncio.ensure_future(batcher.run(runtime, random_feed(runtime, rng, rows=1, time=3)))
        await until(executor.started.is_set)
        tasks = [asyncio.ensure_future(batcher.run(runtime, f)) for f in feeds]
        await until(lambda: lane_of(batcher, runtime).queued_rows == len(feeds))
        executor.gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    runs = Runs()
    with GatedExecutor() as executor:
        batcher = Batcher(executor, 64, 0.0, 1024, max_inline_steps=0, max_batch_row_steps=110, observer=runs)
        results = asyncio.run(asyncio.wait_for(main(batcher, executor), 30))
    # After the blocker: [1, 2, 1] (within 2x of each other), [100] (60 is within 2x, but 2 x 100
    # padded > 110), [60] (2 x 60 > 110 with a 50), [50, 50] (100 padded).
    assert runs.sizes == [1, 3, 1, 1, 2]
    for feed, got in zip(feeds, results):
        np.testing.assert_allclose(
            got[contract.OUTPUT], runtime.run(feed)[contract.OUTPUT], atol=1e-6, rtol=0
        )


def test_a_lane_whose_work_makes_no_progress_is_reported_stalled(models):
    runtime = models.get(CHARS, 1)
    feed = random_feed(runtime, np.random.default_rng(10), rows=1, time=3)

    async def main(batcher, executor):
        task = asyncio.ensure_future(batcher.run(runtime, feed))
        await until(executor.started.is_set)
        # Waiting, but not for 10 s: stalled(0.05) here would race the run's start on a loaded machine.
        assert batcher.stalled(10.0) == []
        await asyncio.sleep(0.1)
        assert batcher.stalled(0.05) == [runtime]  # work waits, and no batch has ended for 0.1 s
        executor.gate.set()
        await task
        await until(lambda: lane_of(batcher, runtime).worker is None)
        assert batcher.stalled(0.05) == []

    with GatedExecutor() as executor:
        asyncio.run(main(Batcher(executor, max_inline_steps=0), executor))


def test_many_streams_of_random_chunk_lengths_through_the_batched_server(repository):
    """Over real gRPC, many concurrent streams (random chunkings, both kinds of call) each get what one
    call over their whole sequence gives, while the server merged calls into shared runs."""
    import re

    from lstmserve.client import Client

    from ..servers import ServerProcess

    # Every run leaves the event loop, so calls that arrive meanwhile queue behind it and the next run
    # merges them. (Inline runs, the default for small ones, merge only when calls come within a
    # fraction of a millisecond of each other: on 2 shared cores that is up to timing.)
    server = ServerProcess(repository, "--max-delay-ms", "5", "--max-inline-steps", "0")
    rng = np.random.default_rng(8)
    sequences = [rng.standard_normal((1 + i % 2, 30, 5)).astype(np.float32) for i in range(24)]
    try:
        with Client(server.address) as client:
            wholes = [client.infer(CHARS, x, version=1) for x in sequences]

            def stream(index):
                x, local = sequences[index], np.random.default_rng(index)
                cuts = sorted(set(local.integers(1, 30, size=6).tolist()))
                bounds = [0, *cuts, 30]
                with client.stream(CHARS, version=1, bidi=index % 3 == 0) as s:
                    outputs = [s.feed(x[:, a:b]).output for a, b in zip(bounds[:-1], bounds[1:])]
                return np.concatenate(outputs, axis=1), s.state

            with ThreadPoolExecutor(24) as pool:
                results = list(pool.map(stream, range(len(sequences))))
        for (output, state), whole in zip(results, wholes):
            np.testing.assert_allclose(output, whole.output, atol=1e-6, rtol=0)
            for (c, h), (c1, h1) in zip(state.layers, whole.state.layers):
                np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
                np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)
    finally:
        assert server.terminate() == 0
    stop = next(line for line in server.log if "stopped:" in line)
    requests, runs = map(int, re.search(r"stopped: (\d+) requests in (\d+) onnxruntime runs", stop).groups())
    assert runs < requests, stop  # calls were merged


def test_an_unloaded_version_still_answers_its_streams_but_keeps_no_lane(models):
    """A stream pinned to a version goes on after the version is unloaded (reload.py forgets it); the
    batcher must not hold that version's lane, and with it its onnxruntime session, for good."""
    runtime = models.get(CHARS, 1)
    feed = random_feed(runtime, np.random.default_rng(11), rows=1, time=3)

    async def main(batcher):
        await batcher.run(runtime, feed)
        batcher.forget(runtime)
        got = await batcher.run(runtime, feed)
        np.testing.assert_allclose(
            got[contract.OUTPUT], runtime.run(feed)[contract.OUTPUT], atol=1e-6, rtol=0
        )
        assert runtime not in batcher._lanes

    with ThreadPoolExecutor(1) as executor:
        asyncio.run(main(Batcher(executor)))
