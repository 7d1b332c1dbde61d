"""From an exception to the HTTP answer: the status that matches its gRPC code, `{"error": "..."}`,
and the headers a client acts on (the limit hit, when to retry, whether the connection goes on).

    INVALID_ARGUMENT 400 (413 where a size limit was hit), UNAUTHENTICATED 401, PERMISSION_DENIED 403,
    NOT_FOUND 404, DEADLINE_EXCEEDED 504 (408 where the request did not arrive in time),
    FAILED_PRECONDITION 409 (a state that does not belong), RESOURCE_EXHAUSTED 429, UNAVAILABLE 503,
    INTERNAL 500; and HttpError's own (405, 413, 415)
"""

from __future__ import annotations

import grpc
import orjson

from lstmserve.limits import LIMIT_KEY

from ..errors import DeadlineExceeded, InvalidArgument, status_of
from .routes import Reply

_SIZE_LIMITS = {"max_message_bytes", "max_request_rows", "max_request_steps", "max_request_row_steps"}
_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500,
}
# On every answer, the connection's own refusals too: a browser takes each as its content type says.
NOSNIFF = (b"x-content-type-options", b"nosniff")
_RETRY = {429, 503}  # where retrying (shortly, or elsewhere) can help: Retry-After
_CLOSE = {408, 413}  # a body left unread: the connection cannot carry another request


class HttpError(InvalidArgument):
    """A refusal with an HTTP status of its own (415, 405, ...): counted as INVALID_ARGUMENT."""

    def __init__(self, status: int, message: str, *, limit: str | None = None, allow: str = ""):
        super().__init__(message, limit=limit)
        self.status, self.allow = status, allow


def http_status(exc: BaseException, code: grpc.StatusCode) -> int:
    if isinstance(exc, HttpError):
        return exc.status
    limit = getattr(exc, "limit", None)
    if code == grpc.StatusCode.INVALID_ARGUMENT and limit in _SIZE_LIMITS:
        return 413
    if isinstance(exc, DeadlineExceeded) and limit == "receive_seconds":
        return 408
    return _STATUS.get(code, 500)


def error_reply(exc: BaseException, code: grpc.StatusCode) -> Reply:
    _, details = status_of(exc)
    status = http_status(exc, code)
    reply = Reply(orjson.dumps({"error": details}), status=status)
    limit = getattr(exc, "limit", None)
    if limit:
        reply.headers.append((LIMIT_KEY.encode(), limit.encode()))
    if status in _RETRY:
        reply.headers.append((b"retry-after", b"1"))
    if status in _CLOSE:
        reply.headers.append((b"connection", b"close"))
    if status == 401:
        reply.headers.append((b"www-authenticate", b"Bearer"))
    if isinstance(exc, HttpError) and exc.allow:
        reply.headers.append((b"allow", exc.allow.encode()))
    return reply
