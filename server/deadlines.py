"""Calls that cannot be answered before their deadline, refused before they cost a batch.

A call's deadline reaches the server with it (gRPC's grpc-timeout), and the batcher is given it. A run
of a model version takes no less time than a recent run of no more padded row-steps did (onnxruntime's
time alone: more rows or steps never make a run faster), so a call whose time left, when it reaches
its model's lane, is no more than the fastest recent run of at most its own row-steps cannot be met:
it is refused DEADLINE_EXCEEDED there, saying how long such runs take, instead of running for a
client that will have gone. Runs, not whole calls, set the bar: a run's time does not grow while
calls queue or clients upload, and one model's runs say nothing about another's; a long call's run
says nothing about a short one's. Only runs of the last WINDOW seconds count, so a slow spell is
forgotten.
"""

from __future__ import annotations

import collections
from time import monotonic

from .errors import DeadlineExceeded

LATE = "the call's deadline passed before its batch ran: it was not run; allow more time, or add replicas"
RECENT = 64  # runs remembered
WINDOW = 10.0  # seconds a run counts for


class RecentRuns:
    """One model version's recent runs, and the check they allow."""

    def __init__(self) -> None:
        # (when it ended, padded row-steps, seconds)
        self._runs: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=RECENT)

    def ran(self, row_steps: int, seconds: float) -> None:
        self._runs.append((monotonic(), row_steps, seconds))

    def fastest(self, row_steps: int) -> float:
        """The fastest run of the last WINDOW seconds of at most `row_steps`; 0.0 when there was none."""
        horizon = monotonic() - WINDOW
        while self._runs and self._runs[0][0] < horizon:
            self._runs.popleft()
        return min([seconds for _, size, seconds in self._runs if size <= row_steps], default=0.0)

    def check(self, remaining: float, row_steps: int, label: str) -> None:
        """Refuse a call of `row_steps` to the model `label` with `remaining` seconds left, if it
        cannot be met."""
        if remaining <= 0:
            raise DeadlineExceeded(LATE)
        fastest = self.fastest(row_steps)
        if remaining <= fastest:
            raise DeadlineExceeded(
                f"the call reached {label} with {remaining * 1e3:.1f} ms left of its deadline; runs of its "
                f"size take {fastest * 1e3:.1f} ms or more here now, so it could not be met: allow more time"
            )
