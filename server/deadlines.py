"""Calls that cannot be answered before their deadline, told so on arrival instead of after a batch.

A call's deadline reaches the server with it (gRPC's grpc-timeout), so a call with less time left than
the server's fastest recent answers took cannot be met: it is refused DEADLINE_EXCEEDED at once, before
it waits for a receive turn, is parsed, or holds a place in a batch. A storm of calls with 1-10 ms
deadlines then costs the server little more than gRPC's own work per call, and its calls no longer
delay anyone else's batches. The fastest of the last few answers (not their mean) is the bar, so a
call that could still be answered in time is never refused: one that fails it would not have been.
"""

from __future__ import annotations

import collections
from time import monotonic

from .errors import DeadlineExceeded

_RECENT = 64  # answers remembered
_REFRESH = 0.1  # seconds between recomputing the fastest of them


class Deadlines:
    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=_RECENT)
        self._fastest = 0.0
        self._computed_at = 0.0

    def answered(self, seconds: float) -> None:
        """A call was answered in `seconds`, from its arrival in the handler to its answer."""
        self._recent.append(seconds)

    def fastest(self) -> float:
        now = monotonic()
        if now - self._computed_at > _REFRESH:
            self._fastest, self._computed_at = min(self._recent, default=0.0), now
        return self._fastest

    def check(self, remaining: float | None) -> None:
        """Refuse a call with `remaining` seconds left (None: no deadline) that cannot be met."""
        if remaining is None:
            return
        fastest = self.fastest()
        if remaining <= fastest:
            raise DeadlineExceeded(
                f"the call arrived with {remaining * 1e3:.1f} ms left of its deadline; answers take "
                f"{fastest * 1e3:.1f} ms here now, so it could not be met: allow more time"
            )
