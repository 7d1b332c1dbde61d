"""What the server logs of its calls: refusals, rate-limited; gRPC's own everyday noise, filtered.

A client sending garbage in a loop, or a storm of clients giving up, must not flood the log or fill
it with tracebacks of events that are not errors.
"""

from __future__ import annotations

import logging
from time import monotonic

import grpc

from .errors import status_of

log = logging.getLogger("lstmserve.server")


class ClientGoneFilter(logging.Filter):
    """gRPC logs an ERROR with a traceback when an answer cannot be sent because its client has
    just gone (a deadline, a cancel) and it has not heard of that yet: an everyday event, not an error;
    and when a client sends metadata that is not UTF-8. Installed on gRPC's logger by the server;
    such records go to our DEBUG log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("ExecuteBatchError raised in core"):
            log.debug("an answer was not sent: its client had gone (%s)", record.getMessage())
            return False
        if message.startswith("Invalid encoding on"):
            # A metadata value that is not UTF-8: gRPC drops it and logs the value with a traceback,
            # at any client's will (and the value may be someone's token). Not logged here.
            log.debug("a call's metadata held a value that is not UTF-8; gRPC dropped it")
            return False
        return True


class RefusalLog:
    """One INFO line per refused call, up to `per_second`; past that, one line a second saying how many
    were not logged: a client sending garbage in a loop must not flood the log (4000 lines/s seen)."""

    def __init__(self, per_second: int = 10):
        self.per_second = per_second
        self.second = 0
        self.logged = self.skipped = 0

    def refused(self, method: str, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status a client gets for `exc` (errors.status_of), logged: the unexpected at ERROR with
        its traceback, a refusal as one rate-limited line. Both edges, gRPC's and HTTP's, call this."""
        code, details = status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("%s failed unexpectedly", method, exc_info=exc)
        else:
            self.log(method, code, details)
        return code, details

    def log(self, method: str, code: grpc.StatusCode, details: str) -> None:
        now = int(monotonic())
        if now != self.second:
            if self.skipped:
                log.info("... and %d more refused calls not logged", self.skipped)
            self.second, self.logged, self.skipped = now, 0, 0
        if self.logged < self.per_second:
            self.logged += 1
            log.info("%s %s: %s", method, code.name, details)
        else:
            self.skipped += 1
