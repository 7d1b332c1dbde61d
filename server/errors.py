"""Every error the server raises, and the one mapping from an exception to the status a client gets.

    LstmServeError
      ServingError (a call refused: carries its gRPC status)
        InvalidArgument, NotFound, FailedPrecondition, ResourceExhausted, Unavailable, DeadlineExceeded,
        Unauthenticated, PermissionDenied
      StartError (the server cannot start: one line, no traceback)
        RepositoryError (the repository folder is unusable)
      ModelLoadError (one file cannot be served: logged, the rest go on)

`status_of` maps any exception to a status: a ServingError to its own, anything else to INTERNAL
with a fixed message (the caller logs the traceback). server/calls.py applies it to every call, and
`trailing_metadata` with it: a refusal caused by a configured limit names that setting there
(`lstmserve-limit: max_request_rows`), for clients to read as data rather than from the message.

Text a client sent is never echoed raw: `quoted` escapes it and cuts it short, so a 1 MB model name
or a newline in a fingerprint cannot bloat a status or forge a log line.
"""

from __future__ import annotations

import grpc

from lstmserve.errors import LstmServeError
from lstmserve.limits import LIMIT_KEY

ECHO_CHARS = 100  # the most of a client's own text a status or log line repeats
MAX_DETAILS = 1000  # a status message travels in a header: clients refuse large ones (8 KiB by default)
INTERNAL_DETAILS = "internal error; the server logged it"


class ServingError(LstmServeError):
    """A request the server refuses; `code` is the gRPC status the client gets, `limit` the name of
    the setting (a Settings field, e.g. "max_request_rows") that caused it, if one did."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, limit: str | None = None):
        super().__init__(message)
        self.limit = limit


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServingError):
    """Only for what a retry later can get past: a full queue, too many calls or streams at once."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServingError):
    """Shutting down, or a stream the server ended: retry, on another replica or a new stream."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ServingError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServingError):
    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(ServingError):
    """A call that cannot be answered in time: its unary request did not arrive within
    --receive-seconds, or it reached its model's lane with no more time left than the model's runs
    take, or its deadline passed while it waited there (deadlines.py)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class StartError(LstmServeError):
    """The server could not start (no repository, port taken): the message says why."""


class RepositoryError(StartError):
    """The repository folder itself is unusable (the server cannot start)."""


class ModelLoadError(LstmServeError):
    """A file in the repository that cannot be served; the message says which and why."""


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a client gets for an exception raised while answering it."""
    if not isinstance(exc, ServingError):
        return grpc.StatusCode.INTERNAL, INTERNAL_DETAILS
    details = str(exc)
    if len(details) > MAX_DETAILS:
        details = details[: MAX_DETAILS - 3] + "..."
    return exc.code, details


def trailing_metadata(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """The trailing metadata a client gets with an exception's status: the limit it hit, if any."""
    limit = exc.limit if isinstance(exc, ServingError) else None
    return () if limit is None else ((LIMIT_KEY, limit),)


def quoted(text: str | bytes, limit: int = ECHO_CHARS) -> str:
    """A client's text, escaped (no control characters survive) and at most `limit` characters long."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    shown = repr(text[:limit])  # escapes can make it longer than the text: cut the escaped form too
    if len(text) > limit or len(shown) > limit + 2:
        return f"{shown[:limit]}... ({len(text)} characters)"
    return shown
