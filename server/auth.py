"""Token authentication: `--auth-tokens FILE`, and what each token may call.

The file holds one token per line, optionally followed by the model names it may call (none: every
model); `#` starts a comment. Only the tokens' SHA-256 digests are kept, and a presented token is
hashed before it is looked up, so neither the file's contents stay in memory nor does a lookup's
timing tell anything about a token. Clients send `authorization: Bearer <token>` metadata.

Health stays open, so probes need no token. Everything else needs one: a missing or unknown token
is UNAUTHENTICATED; a model the token may not call is PERMISSION_DENIED, whether or not it exists,
and lists, errors and messages name only the models in the token's scope. The file is read again
when it changes (looked at no more than once a second); a file that cannot be read keeps the tokens
already loaded.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from .errors import StartError, Unauthenticated

log = logging.getLogger("lstmserve.server")

MIN_TOKEN_CHARS = 16  # anything shorter is guessable
_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Scope:
    """The models a caller may call: `models` None means every model. `holder` names the token (a
    prefix of its digest) where tokens are on: the client that fair shares are counted by."""

    models: frozenset[str] | None = None
    holder: str = ""

    def allows(self, name: str) -> bool:
        return self.models is None or name in self.models


EVERY_MODEL = Scope()


class Tokens:
    def __init__(self, path: str):
        self.path = Path(path)
        try:
            self._stamp = self._file_stamp()
            self._scopes = _parse(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise StartError(f"--auth-tokens: {exc}") from None
        self._checked = time.monotonic()
        log.info("token authentication on: %d tokens from %s", len(self._scopes), self.path)

    def scope_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Scope:
        """The scope of the bearer token in a call's metadata; Unauthenticated without a valid one."""
        self._reload_if_changed()
        token = next((value for key, value in metadata or () if key == "authorization"), None)
        if not isinstance(token, str) or not token.startswith("Bearer "):
            raise Unauthenticated("send the metadata 'authorization: Bearer <token>'")
        scope = self._scopes.get(_digest(token[len("Bearer ") :].strip()))
        if scope is None:
            raise Unauthenticated("the bearer token is not valid here")
        return scope

    def _file_stamp(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < _CHECK_SECONDS:
            return
        self._checked = now
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self._scopes, self._stamp = _parse(self.path.read_text()), stamp
        except (OSError, ValueError) as exc:
            log.warning("--auth-tokens changed but cannot be used (%s): keeping the tokens loaded", exc)
            return
        log.info("token authentication: %d tokens reloaded from %s", len(self._scopes), self.path)


class ReflectionGuard(grpc.aio.ServerInterceptor):
    """Reflection (which lstmserve does not register through its own call path) needs a token too."""

    def __init__(self, tokens: Tokens, service: str):
        self.tokens, self.prefix = tokens, f"/{service}/"

    async def intercept_service(self, continuation, details):
        if details.method.startswith(self.prefix):
            try:
                self.tokens.scope_of(details.invocation_metadata)
            except Unauthenticated as exc:
                return grpc.stream_stream_rpc_method_handler(_refusal(str(exc)))
        return await continuation(details)


def _refusal(message: str):
    async def refuse(requests, context: grpc.aio.ServicerContext):
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        context.set_details(message)
        return
        yield  # an async generator: the handler of a stream-stream method

    return refuse


def _parse(text: str) -> dict[str, Scope]:
    scopes: dict[str, Scope] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        token, models = words[0], words[1:]
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"line {number}: a token of {len(token)} characters; use {MIN_TOKEN_CHARS} or more"
            )
        digest = _digest(token)
        scopes[digest] = Scope(frozenset(models) if models else None, holder=f"token {digest[:12]}")
    if not scopes:
        raise ValueError("no tokens in the file: every call would be refused")
    return scopes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
