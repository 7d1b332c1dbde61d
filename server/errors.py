"""Domain errors that carry their gRPC status; server/calls.py turns them into `context.abort` in one place.

Text a client sent is never echoed raw: `quoted` escapes it and cuts it short, so a 1 MB model name
or a newline in a fingerprint cannot bloat a status or forge a log line.
"""

from __future__ import annotations

import grpc

from lstmserve.errors import LstmServeError

ECHO_CHARS = 100  # the most of a client's own text a status or log line repeats


class ServingError(LstmServeError):
    """A request the server refuses; `code` is the gRPC status the client gets."""

    code = grpc.StatusCode.INTERNAL


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


def quoted(text: str | bytes, limit: int = ECHO_CHARS) -> str:
    """A client's text, escaped (no control characters survive) and at most `limit` characters long."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    shown = repr(text[:limit])  # escapes can make it longer than the text: cut the escaped form too
    if len(text) > limit or len(shown) > limit + 2:
        return f"{shown[:limit]}... ({len(text)} characters)"
    return shown
