"""The console's routes: the page and its files, open as health is (they hold nothing of a model: the
page asks for a token and sends it with each call), and three small JSON documents, two of which need
a token and show only what it may call. None of them is counted as a call (the edge's "read" kind).

    GET /                          the page (console/static/index.html)
    GET /console/{file}            its modules, style sheet and icon, nothing else
    GET /console/api/access        open: {"tokens": true} where calls need a token
    GET /console/api/models        the server, and every model version in the token's scope
    GET /console/api/figures       live figures (figures.py)

Everything else the page does goes through the Open Inference Protocol's routes (rest_service.py):
the same calls a client makes.
"""

from __future__ import annotations

import re
from importlib import resources

import orjson

from lstmserve import __version__

from ..admission import Call
from ..dataplane import DataPlane
from ..errors import NotFound
from ..health import Health
from ..metrics import Metrics
from ..protocols import oip, v1
from ..protocols.rest_generate import is_text
from ..web.routes import HttpRequest, Reply, Route
from .figures import figures

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The page runs only its own files, talks only to its own origin, and cannot be framed: a strict policy
# with no inline script or style, which the page is written to need.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A few kB, read again each time: a new release shows at once, and no answer is kept by a cache.
_NO_STORE = (b"cache-control", b"no-store")
_PAGE_HEADERS = [
    (b"content-security-policy", _POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    _NO_STORE,
]


class ConsoleService:
    def __init__(self, plane: DataPlane, health: Health, metrics: Metrics, tokens_on: bool):
        self.plane = plane
        self.health = health
        self.metrics = metrics
        self.tokens_on = tokens_on
        self.files = _static_files()

    def routes(self) -> list[Route]:
        return [
            Route("GET", re.compile("/"), "ConsolePage", self.page, "open"),
            Route("GET", re.compile("/console/api/access"), "ConsoleAccess", self.access, "open"),
            Route("GET", re.compile("/console/api/models"), "ConsoleModels", self.models, "read"),
            Route("GET", re.compile("/console/api/figures"), "ConsoleFigures", self.figures, "read"),
            Route(
                "GET",
                re.compile(r"/console/(?P<file>[a-z_]+\.(?:js|css|svg))"),
                "ConsoleFile",
                self.file,
                "open",
            ),
        ]

    async def page(self, request: HttpRequest, call: Call) -> Reply:
        return self._serve("index.html")

    async def file(self, request: HttpRequest, call: Call) -> Reply:
        return self._serve(request.path["file"])

    async def access(self, request: HttpRequest, call: Call) -> Reply:
        """Whether calls need a token: so the page asks for one first, not after a refusal."""
        return _json({"tokens": self.tokens_on})

    async def models(self, request: HttpRequest, call: Call) -> Reply:
        plane, health = self.plane, self.health
        sealed = plane.seal is not None
        server = {
            "name": "lstmserve",
            "version": __version__,
            "ready": health.serving(),
            "devices": health.devices(),  # the whole server's, as its probes see them
            "sealed": sealed,
            "tokens": self.tokens_on,
        }
        models = [
            {
                **v1.model_fields(runtime, plane.repository, plane.limits, call.scope),
                "ready": health.ready(runtime),
                "text": is_text(runtime),  # generate_stream takes and gives text
                "metadata": oip.metadata(runtime, plane.repository.versions(runtime.info.name), sealed),
            }
            for runtime in plane.repository.all(call.scope)
        ]
        return _json({"server": server, "models": models})

    async def figures(self, request: HttpRequest, call: Call) -> Reply:
        return _json(figures(self.metrics, call.scope))

    def _serve(self, name: str) -> Reply:
        if name not in self.files:
            raise NotFound(f"no such console file: {name}")
        data, content_type = self.files[name]
        return Reply(data, content_type, headers=list(_PAGE_HEADERS))


def _json(value: object) -> Reply:
    return Reply(orjson.dumps(value), headers=[_NO_STORE])


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file the page is made of, with its content type, read once: a name not in it is a 404, so
    no path reaches the disk."""
    folder = resources.files(__package__) / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix] + "; charset=utf-8")
    return files
