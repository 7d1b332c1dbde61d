"""Domain errors that carry their gRPC status; servicer.py turns them into `context.abort` in one place."""

from __future__ import annotations

import grpc

from lstmserve.errors import LstmServeError


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
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE
