"""Batching is exact: a request's answer does not depend on what it was merged with."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lstmserve import contract
from lstmserve.server.batcher import Batcher, merge, split
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


def test_concurrent_requests_are_merged_and_each_gets_its_own_answer(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(1)
    feeds = [random_feed(runtime, rng) for _ in range(40)]
    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(executor, max_batch_rows=64)
        results = run_all(batcher, runtime, feeds)
    assert batcher.requests == 40 and batcher.batches < 40  # merged, not one run each
    for feed, got in zip(feeds, results):
        alone = runtime.run(feed)
        for key in alone:
            np.testing.assert_allclose(got[key], alone[key], atol=1e-6, rtol=0)


def test_a_delay_gathers_bigger_batches(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(2)
    feeds = [random_feed(runtime, rng, rows=1, time=5) for _ in range(16)]
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.05)
        run_all(batcher, runtime, feeds)
    # The first finds the lane idle and runs at once; the rest arrive while it is busy and wait together.
    assert batcher.batches == 2 and batcher.requests == 16


def test_max_batch_rows_caps_a_batch_and_zero_turns_batching_off(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(3)
    feeds = [random_feed(runtime, rng, rows=3) for _ in range(8)]
    with ThreadPoolExecutor(1) as executor:
        capped = Batcher(executor, max_batch_rows=6, max_delay=0.05)
        run_all(capped, runtime, feeds)
        off = Batcher(executor, max_batch_rows=0)
        run_all(off, runtime, feeds)
    assert capped.batches == 5  # the first alone, then two requests of 3 rows per run
    assert off.batches == off.requests == 8


def test_a_full_queue_refuses_at_once(models):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(4)
    feeds = [random_feed(runtime, rng, rows=1) for _ in range(10)]
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.01, max_queue_rows=4)
        results = run_all(batcher, runtime, feeds)
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    answered = [r for r in results if isinstance(r, dict)]
    # The first runs at once; four queue behind the second leader's wait; the other five are refused.
    assert len(answered) == 5 and len(refused) == 5
    assert "chars v1 has 4 rows queued (--max-queue-rows 4)" in str(refused[0])


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
        with Client(server.address) as client, ThreadPoolExecutor(16) as pool:

            def call(_):
                try:
                    return client.infer(CHARS, x, version=1).output
                except ResourceExhaustedError as exc:
                    return exc

            results = list(pool.map(call, range(32)))
            refused = [r for r in results if isinstance(r, ResourceExhaustedError)]
            assert refused and refused[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rows queued (--max-queue-rows 3)" in refused[0].details
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
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.01, max_inline_steps=inline_steps)
        results = run_all(batcher, runtime, feeds)
    assert batcher.requests == 12 and batcher.batches <= 2  # merged, whichever path ran them
    for feed, got in zip(feeds, results):
        np.testing.assert_allclose(
            got[contract.LOGITS], runtime.run(feed)[contract.LOGITS], atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("leave_after", [0.003, 0.015], ids=["while gathering", "while running"])
def test_a_caller_that_leaves_does_not_strand_the_others(models, leave_after):
    runtime = models.get(CHARS, 1)
    rng = np.random.default_rng(7)
    feeds = [random_feed(runtime, rng, rows=1, time=20_000) for _ in range(5)]

    async def main(batcher):
        await batcher.run(runtime, feeds[0])  # the lane has just run: the next leader waits 10 ms
        tasks = [asyncio.ensure_future(batcher.run(runtime, f)) for f in feeds[1:]]
        await asyncio.sleep(leave_after)  # then the leader's caller goes away
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(executor, max_batch_rows=64, max_delay=0.01, max_inline_steps=0)
        results = asyncio.run(asyncio.wait_for(main(batcher), 30))
    assert isinstance(results[0], asyncio.CancelledError)
    for feed, got in zip(feeds[2:], results[1:]):
        np.testing.assert_allclose(
            got[contract.OUTPUT], runtime.run(feed)[contract.OUTPUT], atol=1e-6, rtol=0
        )


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
