"""Cross-origin calls: off unless --http-cors-origin names the one origin (scheme://host[:port]) whose
pages may call this server; the console itself needs none, since it calls its own origin.

A browser asks first (a preflight: OPTIONS with Access-Control-Request-Method), then sends the call;
both answers carry Access-Control-Allow-Origin for that origin only. A page of any other origin gets
no such header, so its browser keeps the answer from it (and its preflight is refused 405).
"""

from __future__ import annotations

_ALLOW_METHODS = b"GET, POST"
_ALLOW_HEADERS = b"authorization, content-type, inference-header-content-length"
# What a page's script may read of an answer besides the simple headers.
_EXPOSE_HEADERS = b"inference-header-content-length, lstmserve-limit, retry-after, www-authenticate"
PREFLIGHT_SECONDS = 600  # how long a browser may reuse a preflight's answer


class Cors:
    def __init__(self, origin: str):
        self.origin = origin.encode()

    def headers(self, request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """What every answer to this request adds: the grant where its Origin is the one allowed."""
        if not self.origin:
            return []
        vary = (b"vary", b"origin")  # a cache must not hand one origin's answer to another
        if (b"origin", self.origin) not in request_headers:
            return [vary]
        return [
            vary,
            (b"access-control-allow-origin", self.origin),
            (b"access-control-expose-headers", _EXPOSE_HEADERS),
        ]

    def is_preflight(self, method: str, request_headers: list[tuple[bytes, bytes]]) -> bool:
        return (
            method == "OPTIONS"
            and bool(self.origin)
            and (b"origin", self.origin) in request_headers
            and any(name == b"access-control-request-method" for name, _ in request_headers)
        )

    @staticmethod
    def preflight_headers() -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-methods", _ALLOW_METHODS),
            (b"access-control-allow-headers", _ALLOW_HEADERS),
            (b"access-control-max-age", str(PREFLIGHT_SECONDS).encode()),
        ]
