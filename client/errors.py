"""The client's one exception hierarchy: every grpc.RpcError becomes one of these.

    LstmServeClientError          base; .code is the grpc.StatusCode, .details the server's message
    ├── InvalidArgumentError      INVALID_ARGUMENT: a bad tensor, shape, dtype, length or state
    ├── NotFoundError             NOT_FOUND: unknown model or version
    ├── StateMismatchError        FAILED_PRECONDITION: a state made by another model or version
    ├── ResourceExhaustedError    RESOURCE_EXHAUSTED: the server's queue is full, or a message is too big
    ├── UnavailableError          UNAVAILABLE: no server, or it is shutting down (Infer was retried first)
    ├── DeadlineExceededError     DEADLINE_EXCEEDED: the call's timeout passed
    ├── AuthenticationError       UNAUTHENTICATED
    ├── PermissionDeniedError     PERMISSION_DENIED
    └── ServerError               anything else (INTERNAL, UNKNOWN, ...)

Each is also an `lstmserve.errors.LstmServeError`, so one `except` catches everything lstmserve raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from lstmserve.errors import LstmServeError


class LstmServeClientError(LstmServeError):
    """A call the server (or the channel) refused."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class InvalidArgumentError(LstmServeClientError, ValueError):
    pass


class NotFoundError(LstmServeClientError, LookupError):
    pass


class StateMismatchError(LstmServeClientError):
    pass


class ResourceExhaustedError(LstmServeClientError):
    pass


class UnavailableError(LstmServeClientError, ConnectionError):
    pass


class DeadlineExceededError(LstmServeClientError, TimeoutError):
    pass


class AuthenticationError(LstmServeClientError):
    pass


class PermissionDeniedError(LstmServeClientError):
    pass


class ServerError(LstmServeClientError):
    pass


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: StateMismatchError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def from_rpc_error(error: grpc.RpcError) -> LstmServeClientError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    return _BY_CODE.get(code, ServerError)(code, details)


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Around a call (sync or awaited): a grpc.RpcError leaves as this hierarchy's exception."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
