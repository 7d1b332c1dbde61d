"""What a route's handler is given and gives back: the types RestService (and the console, later)
write against, with no part of the edge's machinery."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# Triton's binary tensor extension: the length of the JSON header that binary tensors follow, on a
# request (checked by the edge) and on an answer.
HEADER_LENGTH = b"inference-header-content-length"


@dataclass
class HttpRequest:
    """A request as a handler gets it: its path's parts, its headers and its whole body."""

    path: dict[str, str]
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    header_length: int | None = None  # HEADER_LENGTH, checked against the body (binary routes only)


@dataclass
class Reply:
    data: bytes
    content_type: str = "application/json"
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str  # the method label in the metrics, as gRPC's (ModelInfer, ...)
    # (HttpRequest, Call) -> Reply, or for events an async iterator of each event's bytes
    handler: Callable[..., Any]
    # open: no token, no body, not counted (health, the console's page); read: the same with a token
    # (the console's documents); unary: a counted, admitted call with a body; events: the same, streamed
    kind: Literal["open", "read", "unary", "events"] = "unary"
    binary: bool = False  # takes binary tensors after a JSON header of HEADER_LENGTH bytes
