"""time_major=True, as TF1's dynamic_rnn takes it: (time, batch, features) in, time first out; the
wire stays batch-major. Python client (sync and async, unary and bidi streams) and `lstmserve infer`."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client

from ..conftest import CHARS, DIGITS
from .test_cli import lstmserve

X = np.random.default_rng(5).standard_normal((3, 9, 5)).astype(np.float32)  # (batch, time, features)
T = np.ascontiguousarray(X.swapaxes(0, 1))  # the same, time first


def test_infer_time_major_is_the_batch_major_answer_transposed(client):
    want = client.infer(CHARS, X, version=1)
    got = client.infer(CHARS, T, version=1, time_major=True)
    assert got.output.shape == (9, 3, 7) and got.logits.shape == (9, 3, 4)
    np.testing.assert_allclose(got.output, want.output.swapaxes(0, 1), atol=1e-6)
    np.testing.assert_allclose(got.logits, want.logits.swapaxes(0, 1), atol=1e-6)
    digits = np.random.default_rng(1).random((8, 2, 8), dtype=np.float32)  # time-major digits
    classified = client.infer(DIGITS, digits, time_major=True)
    assert classified.logits.shape == (2, 10)  # classify_last: no time axis to move
    np.testing.assert_allclose(
        classified.logits, client.infer(DIGITS, digits.swapaxes(0, 1)).logits, atol=1e-6
    )


@pytest.mark.parametrize("bidi", [False, True])
def test_a_time_major_stream_in_chunks_equals_one_call(client, bidi):
    want = client.infer(CHARS, X, version=1)
    with client.stream(CHARS, version=1, bidi=bidi, time_major=True) as stream:
        pieces = [stream.feed(T[start:stop]) for start, stop in ((0, 4), (4, 9))]
    np.testing.assert_allclose(
        np.concatenate([p.logits for p in pieces]), want.logits.swapaxes(0, 1), atol=1e-6
    )


@pytest.mark.parametrize("bidi", [False, True])
def test_a_fork_of_a_time_major_stream_reads_its_chunks_time_first(client, bidi):
    """A fork once lost time_major: its next time-first chunk was read batch-major and refused."""
    want = client.infer(CHARS, X, version=1).logits.swapaxes(0, 1)  # (time, batch, classes)
    with client.stream(CHARS, version=1, bidi=bidi, time_major=True) as stream:
        stream.feed(T[:4])
        with stream.fork() as fork:
            assert fork.time_major
            forked = fork.feed(T[4:])
        rest = stream.feed(T[4:])
    assert forked.logits.shape == (5, 3, 4)
    np.testing.assert_allclose(forked.logits, want[4:], atol=1e-6)
    np.testing.assert_allclose(rest.logits, want[4:], atol=1e-6)


def test_a_fork_of_an_async_time_major_stream_reads_its_chunks_time_first(server):
    async def main():
        async with AsyncClient(server.address) as client:
            whole = await client.infer(CHARS, T, version=1, time_major=True)
            async with client.stream(CHARS, version=1, bidi=True, time_major=True) as stream:
                await stream.feed(T[:4])
                async with stream.fork() as fork:
                    forked = await fork.feed(T[4:])
            return whole, forked

    whole, forked = asyncio.run(main())
    np.testing.assert_allclose(forked.output, whole.output[4:], atol=1e-6)


def test_async_time_major(server):
    async def main():
        async with AsyncClient(server.address) as client:
            whole = await client.infer(CHARS, T, version=1, time_major=True)
            stream = client.stream(CHARS, version=1, time_major=True)
            first, rest = await stream.feed(T[:2]), await stream.feed(T[2:])
            await stream.close()
            return whole, np.concatenate([first.output, rest.output])

    whole, streamed = asyncio.run(main())
    np.testing.assert_allclose(streamed, whole.output, atol=1e-6)


def test_a_time_major_input_must_be_three_dimensional(client):
    with pytest.raises(ValueError, match=r"time-major input must be \(time, batch, input_size\)"):
        client.infer(CHARS, X[0], version=1, time_major=True)


def test_infer_cli_time_major(server, tmp_path):
    np.save(tmp_path / "t.npy", T)
    done = lstmserve(
        "infer",
        "--model",
        CHARS,
        "--version",
        "1",
        "--input",
        str(tmp_path / "t.npy"),
        "--time-major",
        "--chunk",
        "4",
        "--output",
        str(tmp_path / "out.npz"),
        "--server",
        server.address,
    )
    assert done.returncode == 0, done.stderr
    assert "chars v1: 3 rows x 9 steps in 3 calls" in done.stdout
    with Client(server.address) as client:
        want = client.infer(CHARS, X, version=1)
    saved = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(saved["output"], want.output.swapaxes(0, 1), atol=1e-6)
    np.testing.assert_allclose(saved["logits"], want.logits.swapaxes(0, 1), atol=1e-6)
