"""Admission: the server-wide bounds on calls, streams and bytes in flight, and the drain on stop."""

import asyncio

import pytest

from lstmserve.server.admission import Admission, Call
from lstmserve.server.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from lstmserve.server.settings import Settings


def admission(**settings) -> Admission:
    return Admission(Settings(**settings))


def test_calls_past_the_limit_are_refused_until_one_ends():
    gate = admission(max_calls=2)
    gate.start_call()
    gate.start_call()
    with pytest.raises(
        ResourceExhausted, match=r"2 calls in flight \(--max-calls 2\); retry shortly"
    ) as refused:
        gate.start_call()
    assert refused.value.limit == "max_calls"  # sent as trailing metadata: the setting's name
    gate.end_call()
    gate.start_call()
    assert gate.calls == 2 and gate.arrivals == 4


def test_bytes_are_reserved_against_the_budget_and_given_back():
    gate = admission(max_inflight_bytes=64 << 20, max_message_bytes=4 << 20)
    first, second = Call(gate), Call(gate)
    first.reserve(40 << 20)
    with pytest.raises(ResourceExhausted, match=r"hold 40 MiB \(--max-inflight-bytes 64 MiB\)") as refused:
        second.reserve(30 << 20)
    assert refused.value.limit == "max_inflight_bytes"
    second.reserve(20 << 20)
    second.hold_state(1 << 20)  # a stream's state, kept between messages
    second.release_message()
    assert gate.bytes == (40 << 20) + (1 << 20)
    first.release()
    second.release()
    assert gate.bytes == 0


def test_streams_past_the_limit_are_refused():
    async def main():
        gate = admission(max_streams=1)
        gate.open_stream()
        with pytest.raises(ResourceExhausted, match=r"1 streams open \(--max-streams 1\)") as refused:
            gate.open_stream()
        assert refused.value.limit == "max_streams"

    asyncio.run(main())


def test_drain_refuses_new_calls_and_ends_when_those_in_flight_have():
    async def main():
        gate = admission()
        gate.start_call()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, gate.end_call)  # the call in flight finishes 0.1 s into the stop
        started = loop.time()
        draining = asyncio.ensure_future(gate.drain(grace=5.0))
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="shutting down: send this call to another replica"):
            gate.start_call()
        with pytest.raises(Unavailable):
            gate.open_stream()
        await draining
        return loop.time() - started

    assert 0.1 <= asyncio.run(main()) < 1.0  # not the whole grace


def test_drain_ends_open_streams_with_their_reason_once_the_grace_is_over():
    async def main():
        gate = admission()
        reasons = []

        async def stream():
            entry = gate.open_stream()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                reasons.append(entry.ended_by)
            finally:
                gate.close_stream(entry)

        task = asyncio.ensure_future(stream())
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        await gate.drain(grace=0.2)
        await task
        return asyncio.get_running_loop().time() - started, reasons

    seconds, reasons = asyncio.run(main())
    assert 0.2 <= seconds < 1.0
    assert reasons == [
        "the server is shutting down: send this call to another replica "
        "(resume the stream there from the last state)"
    ]


def test_idle_streams_are_ended_and_busy_ones_are_not():
    async def main():
        gate = admission(stream_idle_seconds=0.05)
        entries = {}

        async def stream(name, computing):
            entry = entries[name] = gate.open_stream()
            entry.waits_on_client(not computing)  # computing an answer is not idle, however long
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return entry.ended_by
            finally:
                gate.close_stream(entry)

        idle = asyncio.ensure_future(stream("idle", computing=False))
        busy = asyncio.ensure_future(stream("busy", computing=True))
        await asyncio.sleep(0.1)
        assert gate.end_idle_streams() == 1
        assert "idle for over 0.05 s (--stream-idle-seconds)" in await idle
        assert not busy.done() and entries["busy"].ended_by is None
        busy.cancel()

    asyncio.run(main())


def test_requests_are_received_a_bounded_number_at_a_time_and_within_the_time():
    """Each request being received may be a stalled 4 MiB message: at most max_inflight_bytes /
    (2 x max_message_bytes) at once (here 2); one not in within --receive-seconds is ended."""

    async def main():
        gate = admission(max_message_bytes=1 << 20, max_inflight_bytes=4 << 20, receive_seconds=0.2)
        arrivals = [asyncio.get_running_loop().create_future() for _ in range(3)]
        receiving = [
            asyncio.ensure_future(gate.receive(lambda f=f: f, client=f"client {i}"))
            for i, f in enumerate(arrivals)
        ]
        await asyncio.sleep(0.01)
        assert gate.turns.held == 2  # the third waits for a turn
        arrivals[0].set_result(b"first")
        assert await receiving[0] == b"first"
        await asyncio.sleep(0.01)
        assert gate.turns.held == 2  # the third has its turn now
        await asyncio.sleep(0.25)
        assert gate.end_late_receives() == 2  # neither request came within 0.2 s
        for late in receiving[1:]:
            with pytest.raises(DeadlineExceeded, match=r"did not arrive within 0.2 s \(--receive-seconds\)"):
                await late
        assert gate.turns.held == 0

    asyncio.run(main())


def test_a_call_that_never_got_a_receive_turn_is_told_so():
    """Ended by --receive-seconds while other clients held every turn: the refusal says the turns were
    held, not that its request did not arrive (it may have sent it all)."""

    async def main():
        gate = admission(max_message_bytes=1 << 20, max_inflight_bytes=4 << 20, receive_seconds=0.2)
        never = asyncio.get_running_loop().create_future()
        holders = [asyncio.ensure_future(gate.receive(lambda: never, client=f"silent {i}")) for i in range(2)]
        waiting = asyncio.ensure_future(gate.receive(lambda: never, client="victim"))
        await asyncio.sleep(0.25)
        assert gate.turns.held == 2 and gate.end_late_receives() == 3
        with pytest.raises(DeadlineExceeded, match=r"no receive turn came free within 0.2 s") as refused:
            await waiting
        assert refused.value.limit == "receive_seconds"
        for holder in holders:
            with pytest.raises(DeadlineExceeded, match=r"did not arrive within 0.2 s") as refused:
                await holder
            assert refused.value.limit == "receive_seconds"

    asyncio.run(main())
