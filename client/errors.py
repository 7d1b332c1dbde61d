"""The client's one exception hierarchy: every grpc.RpcError becomes one of these.

    LstmServeClientError          base; .code is the grpc.StatusCode, .details the server's message,
                                  .limit the server setting the call was refused by (its trailing
                                  metadata's lstmserve-limit, e.g. "max_request_row_steps") or None
    ├── InvalidArgumentError      INVALID_ARGUMENT: a bad tensor, shape, dtype, length or state
    ├── NotFoundError             NOT_FOUND: unknown model or version
    ├── StateMismatchError        FAILED_PRECONDITION: a state made by another model or version
    ├── ResourceExhaustedError    RESOURCE_EXHAUSTED: the server's queue is full, or a message is too big
    ├── UnavailableError          UNAVAILABLE: no server, or it is shutting down (Infer was retried first);
    │                             or TLS on one side only, or a certificate refused (the message says which)
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
from lstmserve.limits import LIMIT_KEY


class LstmServeClientError(LstmServeError):
    """A call the server (or the channel) refused."""

    def __init__(self, code: grpc.StatusCode, details: str, limit: str | None = None):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.limit = limit


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


# A connection that fails its TLS handshake ends every call UNAVAILABLE, as a server that is down
# does; only gRPC core's own words tell the causes apart (it gives nothing else to read), so these
# hints are found by them: (words in the details, what to tell the user). Read from grpcio 1.81-1.85.
_CONNECT = "failed to connect to all addresses"  # not a call cut off later ("Socket closed" too)
_HANDSHAKE_HINTS = (
    (
        "Socket closed",
        "the server may expect TLS, or a client certificate: a TLS port closes a plaintext client's "
        "connection so, and an mTLS port that of a client without a certificate its CA signed; give "
        "the CA that signed the server's certificate, tls_credentials(ca) or the CLI's --tls-ca, and "
        "for mTLS the client's own pair, tls_credentials(ca, cert, key) or --tls-cert and --tls-key",
    ),
    (
        "WRONG_VERSION_NUMBER",
        "the server may not speak TLS: a plaintext port fails a TLS client's handshake so",
    ),
    (
        "Hostname Verification Check failed",
        "the server's certificate does not carry the host name or IP address this client dialled: dial "
        "a name it carries, have that name checked instead with the CLI's --tls-server-name NAME or "
        'the channel option ("grpc.ssl_target_name_override", NAME), or make the certificate with '
        "every address clients dial in its subjectAltName, e.g. DNS:localhost,IP:127.0.0.1 "
        "(docs/security.md)",
    ),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "the server's certificate is not signed by the CA this client trusts: give that CA, "
        "tls_credentials(ca) or the CLI's --tls-ca",
    ),
)


def from_rpc_error(error: grpc.RpcError) -> LstmServeClientError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    if code == grpc.StatusCode.UNAVAILABLE and _CONNECT in details:
        hint = next((hint for words, hint in _HANDSHAKE_HINTS if words in details), None)
        details = details if hint is None else f"{details}; {hint}"
    return _BY_CODE.get(code, ServerError)(code, details, _limit_of(error))


def _limit_of(error: grpc.RpcError) -> str | None:
    """The server setting a refusal names in its trailing metadata, if any (lstmserve/limits.py)."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return next((value for key, value in trailing or () if key == LIMIT_KEY), None)


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Around a call (sync or awaited): a grpc.RpcError leaves as this hierarchy's exception."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
