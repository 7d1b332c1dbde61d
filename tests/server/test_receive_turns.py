"""Receive turns: bounded in all, at most a quarter to one client, freed turns handed round the clients."""

import asyncio

import pytest

from lstmserve.server.receive_turns import ReceiveTurns


def take(turns: ReceiveTurns, client: str) -> asyncio.Task:
    return asyncio.ensure_future(turns.acquire(client))


def test_one_client_holds_at_most_a_quarter_and_the_others_find_the_rest_free():
    async def main():
        turns = ReceiveTurns(16)
        hog = [take(turns, "hog") for _ in range(64)]  # 64 calls that will never send their message
        await asyncio.sleep(0)
        assert turns.held == 4 == sum(task.done() for task in hog)
        others = [take(turns, f"client {i}") for i in range(12)]
        await asyncio.sleep(0)
        assert all(task.done() for task in others) and turns.held == 16
        late = take(turns, "late")
        await asyncio.sleep(0)
        assert not late.done()  # every turn is held: it waits, but in its own queue, not the hog's
        turns.release("client 0")
        await asyncio.sleep(0)
        assert late.done() and turns.held == 16  # the freed turn went to it, not to the hog's 60
        for task in hog:
            task.cancel()

    asyncio.run(main())


def test_freed_turns_go_round_the_waiting_clients():
    async def main():
        turns = ReceiveTurns(4)  # one turn per client
        first = [take(turns, name) for name in "abcd"]
        await asyncio.sleep(0)
        queued = [take(turns, name) for name in "aabbc"]
        await asyncio.sleep(0)
        assert all(task.done() for task in first) and not any(task.done() for task in queued)
        order = []
        for name in "abcd":  # each release frees one turn: the next client in the round takes it
            turns.release(name)
            await asyncio.sleep(0)
            order += [i for i, task in enumerate(queued) if task.done() and i not in order]
        assert [("aabbc")[i] for i in order] == ["a", "b", "c"]  # not a, a: one turn per client
        for task in queued:
            task.cancel()

    asyncio.run(main())


def test_a_cancelled_waiter_neither_keeps_nor_loses_a_turn():
    async def main():
        turns = ReceiveTurns(4)
        holders = [take(turns, name) for name in "abcd"]
        await asyncio.sleep(0)
        assert all(task.done() for task in holders)
        gone, stays = take(turns, "e"), take(turns, "f")
        await asyncio.sleep(0)
        gone.cancel()  # its call ended (deadline, cancel) while it waited
        await asyncio.sleep(0)
        turns.release("a")
        await asyncio.sleep(0)
        assert stays.done() and turns.held == 4  # the turn skipped the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await gone
        # Handed a turn and cancelled before it woke: the turn goes back, to whoever waits next.
        handed, after = take(turns, "g"), take(turns, "h")
        await asyncio.sleep(0)
        turns.release("b")  # hands the turn to g...
        handed.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await handed
        await asyncio.sleep(0)
        assert after.done() and turns.held == 4
        for name in "cdfh":
            turns.release(name)
        assert turns.held == 0

    asyncio.run(main())
