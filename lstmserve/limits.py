"""The limits a server puts on one request, as server and client both know them: their names, their
defaults, and the trailing metadata that names the one a refusal hit.

Each limit is the server setting of the same name (server/settings.py declares it, with these
defaults). A server sends its own values in GetModel's ModelInfo.limits; a client that has not asked
can only assume the defaults. A call refused by a configured limit carries, in its trailing metadata,
`lstmserve-limit: <the setting's name>` (e.g. max_request_row_steps): clients read which limit from
there, never from the wording of the message, which is for people.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

_Limits = TypeVar("_Limits", bound="RequestLimits")

LIMIT_KEY = "lstmserve-limit"  # trailing metadata: the name of the setting a refusal hit


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of a server: each field is the server's setting of the same name (its
    --help says what it bounds), and its default here is that setting's."""

    max_request_rows: int = 1024
    max_request_steps: int = 16384
    max_request_row_steps: int = 32768
    max_message_bytes: int = 4 * 1024 * 1024
    max_generate_steps: int = 4096

    @classmethod
    def read_from(cls: type[_Limits], source: Any) -> _Limits:
        """The limits from anything that holds them under the same names: the server's Settings, the
        wire's Limits message (tests/proto checks that its fields are these)."""
        return cls(**{field.name: getattr(source, field.name) for field in fields(RequestLimits)})

    def as_fields(self) -> dict[str, int]:
        """By name, as the settings and the wire's Limits message call them."""
        return asdict(self)


DEFAULT_LIMITS = RequestLimits()
