"""Calls that cannot be answered before their deadline, refused before they cost a batch.

A call's deadline reaches the server with it (gRPC's grpc-timeout), and the batcher is given it. A
model version's run takes at least as long as its fastest recent run (onnxruntime's time alone), so a
call whose time left, when it reaches its model's lane, is no more than that cannot be met: it is
refused DEADLINE_EXCEEDED there, saying how long runs take, instead of running for a client that will
have gone. Runs, not whole calls, set the bar: a run's time does not grow while calls queue or clients
upload, and one model's runs say nothing about another's. Only runs of the last WINDOW seconds count,
so a slow spell that refuses every short deadline (and so leaves no faster runs behind) is forgotten.
"""

from __future__ import annotations

import collections
from time import monotonic

from .errors import DeadlineExceeded

RECENT = 64  # runs remembered
WINDOW = 10.0  # seconds a run counts for


class RecentRuns:
    """One model version's recent run times, and the check they allow."""

    def __init__(self) -> None:
        self._runs: collections.deque[tuple[float, float]] = collections.deque(maxlen=RECENT)  # (when, s)

    def ran(self, seconds: float) -> None:
        self._runs.append((monotonic(), seconds))

    def fastest(self) -> float:
        """The fastest run of the last WINDOW seconds; 0.0 when there was none."""
        horizon = monotonic() - WINDOW
        while self._runs and self._runs[0][0] < horizon:
            self._runs.popleft()
        return min([seconds for _, seconds in self._runs], default=0.0)

    def check(self, remaining: float, label: str) -> None:
        """Refuse a call to the model `label` with `remaining` seconds left, if it cannot be met."""
        if remaining <= 0:
            raise DeadlineExceeded("the call's deadline passed before its batch ran: allow more time")
        fastest = self.fastest()
        if remaining <= fastest:
            raise DeadlineExceeded(
                f"the call reached {label} with {remaining * 1e3:.1f} ms left of its deadline; its runs "
                f"take {fastest * 1e3:.1f} ms or more here now, so it could not be met: allow more time"
            )
