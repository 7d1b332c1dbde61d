"""Turns to receive a unary request: the bound on half-received messages, shared fairly between clients.

A unary request's bytes arrive only while the server reads it: before, its HTTP/2 window holds at
most 64 KiB, but once read gRPC opens the window to the whole message (up to --max-message-bytes).
So reads in progress are bounded (`turns`, from --max-inflight-bytes), and a client that stalls in
the middle of a 4 MiB message holds one turn, not an unbounded share of memory.

A call that sends its headers and never its message looks the same as a slow one until its
--receive-seconds are up. So no client may hold more than `per_client` turns (a quarter of them):
64 such calls on one connection hold 4 turns and queue the rest behind their own, while other
clients' calls find the remaining turns free. A client is a connection, or a token where tokens are
on (a client with many connections is still one client). Freed turns go round the waiting clients in
turn, so none waits behind another's queue.

    acquire(client) ──> a turn free and the client under its share? ──yes──> read
                              │ no
                              ▼
                        wait in the client's own queue; release() hands the turn to the next
                        waiting client (round robin) that is under its share
"""

from __future__ import annotations

import asyncio
import collections


class ReceiveTurns:
    def __init__(self, turns: int):
        self.turns = max(1, turns)
        self.per_client = max(1, self.turns // 4)
        self.held = 0  # turns held now, all clients
        self._held_by: collections.Counter[str] = collections.Counter()
        # client -> its waiters, oldest first; clients in the order they are served (round robin)
        self._waiting: dict[str, collections.deque[asyncio.Future]] = {}

    async def acquire(self, client: str) -> None:
        """Return holding a turn for `client` (give it back with release). Cancellable while waiting."""
        if self._free_for(client) and not self._waiting.get(client):
            self._grant(client)
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, collections.deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed a turn, then cancelled before it woke
                self.release(client)
            raise

    def release(self, client: str) -> None:
        self.held -= 1
        self._held_by[client] -= 1
        if not self._held_by[client]:
            del self._held_by[client]
        self._hand_on()

    def _free_for(self, client: str) -> bool:
        return self.held < self.turns and self._held_by[client] < self.per_client

    def _grant(self, client: str) -> None:
        self.held += 1
        self._held_by[client] += 1

    def _hand_on(self) -> None:
        """Give free turns to waiting clients under their share, one client after another."""
        for client in list(self._waiting):
            if self.held >= self.turns:
                return
            waiters = self._waiting.pop(client)
            while waiters and waiters[0].done():  # their calls were cancelled while waiting
                waiters.popleft()
            if waiters and self._free_for(client):
                self._grant(client)
                waiters.popleft().set_result(None)
            if waiters:
                self._waiting[client] = waiters  # to the back of the round
