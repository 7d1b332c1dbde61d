"""The console's routes on a real server (server/console/service.py, figures.py): the page under a
strict Content-Security-Policy and the files it loads, served by name only (no path reaches the disk);
HEAD and POST on it; --http-console off. /console/api/models says what gRPC's ListModels and the OIP
metadata say, and /console/api/figures counts the calls made, as Prometheus does, leaving out the
console's own; both need a token where tokens are on and show only the token's models."""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import requests

from lstmserve import __version__
from lstmserve.client import Client, InvalidArgumentError
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS, REPO
from ..raw_http import RawHttp, exchange, request
from ..servers import InProcessServer, free_port
from .rest_calls import model_path, post_infer, session
from .test_metrics import scrape, value

STATIC = REPO / "server" / "console" / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
ADMIN, CHARS_ONLY = "admin-token-0123456789", "chars-token-0123456789"
SERVED = {(DIGITS, 1), (CHARS, 1), (CHARS, 2)}
_NONE = {"codes": {}, "latency": [], "runs": 0, "rows": 0}  # a model with no figures yet


def _x(rows: int) -> np.ndarray:
    return np.ones((rows, 3, 5), np.float32)  # (batch, time, input_size) for chars


@pytest.fixture(scope="module")
def server(repository):
    """No tokens; Prometheus on a port of its own."""
    settings = Settings(repository=str(repository), metrics_port=free_port())
    running = InProcessServer(settings).start()
    running.metrics_port = settings.metrics_port
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secured(repository, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("console") / "tokens"
    tokens.write_text(f"{ADMIN}\n{CHARS_ONLY} {CHARS}\n")
    running = InProcessServer(Settings(repository=str(repository), auth_tokens=str(tokens))).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http():
    with session() as made:
        yield made


def get(http: requests.Session, url: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(url, headers=headers, timeout=5)


def api(http: requests.Session, server, name: str, token: str | None = None) -> dict:
    """GET /console/api/{name}, which must succeed."""
    answer = get(http, f"{server.http_url}/console/api/{name}", token)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()


class _Loads(HTMLParser):
    """The files a page loads: each <link href> and <script src>."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"link": "href", "script": "src"}.get(tag)
        self.paths += [value for name, value in attrs if name == wanted and value]


def page_files() -> list[str]:
    """Every /console/ path the page loads: index.html's, and the modules each module imports."""
    parser = _Loads()
    parser.feed((STATIC / "index.html").read_text())
    found, todo = set(), list(parser.paths)
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        if path.endswith(".js"):
            source = (STATIC / Path(path).name).read_text()
            todo += [f"/console/{name}" for name in re.findall(r'from "\./([a-z_]+\.js)"', source)]
    return sorted(found)


def test_the_page_is_html_under_a_strict_policy(server, http):
    answer = get(http, server.http_url + "/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.content == (STATIC / "index.html").read_bytes()
    policy = answer.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert answer.headers["cache-control"] == "no-store"


def test_every_file_the_page_loads_is_served_as_its_type(server, http):
    paths = page_files()
    assert {"/console/app.js", "/console/console.css", "/console/icon.svg", "/console/dom.js"} <= set(paths)
    for path in paths:
        answer = get(http, server.http_url + path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].split(";")[0] == TYPES[Path(path).suffix], path
        assert answer.content == (STATIC / Path(path).name).read_bytes(), path
        assert "script-src 'self'" in answer.headers["content-security-policy"], path


@pytest.mark.parametrize(
    "path",
    [
        "/console/nope.js",
        "/console/index.html",  # the page is served at / only
        "/console/app.JS",
        "/console/app.js/",
        "/console/../x",
        "/console/../service.py",
        "/console/../../pyproject.toml",
        "/console/%2e%2e/",
        "/console/%2e%2e/service.py",
        "/console/..%2fservice.py",
        "/console/static/app.js",
        "/console//app.js",
        "/console/service.py",
        "/console/.gitignore",
        "/console/app.js%00.css",
        "/console/",
        "/index.html",
    ],
)
def test_no_other_path_reaches_a_file(server, path):
    answer = exchange(server.http_port, request("GET", path))  # as sent: no client's normalising
    assert answer is not None and answer.status == 404, path
    assert answer.header("content-type") == "application/json" and answer.error
    for kind in (b"<!doctype", b"import ", b"def ", b"[project]"):  # none of a file's text
        assert kind not in answer.body.lower()


def test_head_of_the_page_says_its_length_and_sends_no_body(server):
    page = (STATIC / "index.html").read_bytes()
    with RawHttp(server.http_port) as connection:
        connection.send(request("HEAD", "/"))
        head = connection.response(head=True)
        assert head is not None and head.status == 200
        assert head.header("content-type").startswith("text/html")
        assert head.header("content-length") == str(len(page))
        connection.send(request("GET", "/v2"))  # the next answer starts where HEAD's ended
        after = connection.response()
        assert after is not None and after.status == 200 and after.json()["name"] == "lstmserve"


def test_a_wrong_path_is_pointed_to_the_console(server, http):
    refused = get(http, server.http_url + "/consol")
    assert refused.status_code == 404 and "console at /" in refused.json()["error"]


def test_the_page_takes_get_only(server, http):
    answer = http.post(server.http_url + "/", data=b"x", timeout=5)
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"


def test_the_console_can_be_turned_off(repository, http):
    off = InProcessServer(Settings(repository=str(repository), http_console=False)).start()
    try:
        for path in ("/", "/console/app.js", "/console/api/models", "/console/api/figures"):
            refused = get(http, off.http_url + path)
            assert refused.status_code == 404, path
            assert "console" not in refused.json()["error"]  # the routes it lists are the ones served
        assert get(http, off.http_url + "/v2").status_code == 200
    finally:
        off.stop()


def test_models_says_what_grpc_and_the_oip_metadata_say(server, http):
    shown = api(http, server, "models")
    assert shown["server"] == {
        "name": "lstmserve",
        "version": __version__,
        "ready": True,
        "devices": {"cpu": "serving", "cuda": "unused"},
        "sealed": False,
        "tokens": False,
    }
    with Client(server.address, timeout=10) as client:
        listed = {(info.name, info.version): info for info in client.models()}
    assert {(model["name"], model["version"]) for model in shown["models"]} == SERVED == set(listed)
    for model in shown["models"]:
        name, version = model["name"], model["version"]
        told = asdict(listed[name, version])
        assert {key: model[key] for key in told} == _as_json(told), (name, version)
        assert model["ready"] is True
        assert model["text"] is False  # chars: 4 labels for 5 inputs, so no text in or out
        metadata = get(http, server.http_url + model_path(name, str(version))).json()
        assert model["metadata"] == metadata
        assert [tensor["name"] for tensor in metadata["inputs"]][0] == "input"
        assert [tensor["name"] for tensor in metadata["outputs"]][0] == "output"


def _as_json(fields: dict) -> dict:
    """A dataclass's fields as JSON gives them back: tuples as lists."""
    return {key: list(item) if isinstance(item, tuple) else item for key, item in fields.items()}


def test_the_api_wants_a_token_and_the_page_does_not(secured, http):
    url = secured.http_url
    for path in ("/console/api/models", "/console/api/figures"):
        for token in (None, "not-a-token-at-all-00000"):
            refused = get(http, url + path, token)
            assert refused.status_code == 401, (path, token)
            assert refused.headers["www-authenticate"] == "Bearer" and refused.json()["error"]
    for path in ("/", *page_files()):
        assert get(http, url + path).status_code == 200, path


def test_a_token_sees_its_models_only(secured, http):
    every = api(http, secured, "models", ADMIN)
    assert {(model["name"], model["version"]) for model in every["models"]} == SERVED
    assert every["server"]["tokens"] is True
    chars = api(http, secured, "models", CHARS_ONLY)
    assert {(model["name"], model["version"]) for model in chars["models"]} == {(CHARS, 1), (CHARS, 2)}


def test_a_token_sees_figures_of_its_models_only(secured, http):
    url, admin = secured.http_url, {"Authorization": f"Bearer {ADMIN}"}
    digit = np.ones((1, 4, 8), np.float32)
    assert post_infer(http, url, DIGITS, {"input": digit}, headers=admin).status_code == 200
    assert post_infer(http, url, DIGITS, {"input": digit[..., :5]}, headers=admin).status_code == 400
    assert post_infer(http, url, "nope", {"input": digit}, headers=admin).status_code == 404  # "-"
    chars = {"Authorization": f"Bearer {CHARS_ONLY}"}
    assert post_infer(http, url, CHARS, {"input": np.ones((1, 2, 5), np.float32)}, headers=chars).ok
    assert {"digits:1", "-"} <= set(api(http, secured, "figures", ADMIN)["models"])
    shown = set(api(http, secured, "figures", CHARS_ONLY)["models"])
    assert "chars:2" in shown and shown <= {"chars:1", "chars:2"}  # chars: its latest version


def idle_figures(http: requests.Session, server) -> dict:
    """The figures once no call is in flight (the one reading them is none: the console's reads are not
    counted). A call counts until its server task ends, a moment after its client has the answer:
    waited for, within a bound that only a call left counted for good would pass."""
    deadline = time.monotonic() + 5
    while (figures := api(http, server, "figures"))["server"]["calls"] != 0:
        assert time.monotonic() < deadline, figures["server"]
        time.sleep(0.02)
    assert figures["server"]["inflight_bytes"] == 0  # what the calls held is given back with them
    return figures


def test_figures_count_the_calls_made_and_not_the_console_s(server, http):
    """Known calls to chars:1 over REST and gRPC, one at a time (so one run each), refusals among
    them; the console polling in between."""
    rows = [3, 1, 2, 4, 5]  # one call each: REST JSON, REST JSON, REST binary, gRPC, gRPC
    before = idle_figures(http, server)
    url = server.http_url
    for count, binary in zip(rows[:3], (False, False, True)):
        assert post_infer(http, url, CHARS, {"input": _x(count)}, version="1", binary=binary).ok
        api(http, server, "models")
        api(http, server, "figures")
    bad = post_infer(http, url, CHARS, {"input": np.ones((1, 3, 4), np.float32)}, version="1")
    assert bad.status_code == 400
    with Client(server.address, timeout=10, coalesce=False) as client:
        for count in rows[3:]:
            client.infer(CHARS, _x(count), version=1)
        with pytest.raises(InvalidArgumentError):
            client.infer(CHARS, np.ones((1, 3, 4), np.float32), version=1)
    after = idle_figures(http, server)
    then, now = before["models"].get("chars:1", _NONE), after["models"]["chars:1"]

    grew = {code: n - then["codes"].get(code, 0) for code, n in now["codes"].items()}
    assert {code: n for code, n in grew.items() if n} == {"OK": len(rows), "INVALID_ARGUMENT": 2}
    assert now["runs"] - then["runs"] == len(rows)  # refusals never reach a run
    assert now["rows"] - then["rows"] == sum(rows)

    bounds = [le for le, _ in now["latency"]]
    counts = [n for _, n in now["latency"]]
    assert bounds[-1] == "+Inf" and [float(le) for le in bounds] == sorted(float(le) for le in bounds)
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == sum(now["codes"].values())  # every call of chars:1 here was a timed unary one
    assert counts[-1] - dict(then["latency"]).get("+Inf", 0) == len(rows) + 2

    # The console's reads are not calls: not in the figures, nor in Prometheus.
    methods = {dict(labels).get("method") for _, labels in scrape(server.metrics_port)}
    assert not methods & {"ConsoleModels", "ConsoleFigures", "ConsolePage", "ConsoleAccess"}
    assert after["models"].get("-", _NONE)["codes"] == before["models"].get("-", _NONE)["codes"]

    figures = after["server"]
    assert figures["streams"] == 0 and figures["rss_bytes"] > 0 and figures["cpu_seconds"] > 0


def test_prometheus_has_the_rows_of_each_run(server):
    before = scrape(server.metrics_port)
    with Client(server.address, timeout=10, coalesce=False) as client:
        client.infer(CHARS, _x(3), version=2)
    after = scrape(server.metrics_port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, model="chars:2", **labels) - value(before, name, model="chars:2", **labels)

    assert grew("lstmserve_batch_rows_count") == 1 and grew("lstmserve_batch_rows_sum") == 3
    assert (
        grew("lstmserve_batch_rows_bucket", le="2.0") == 0
        and grew("lstmserve_batch_rows_bucket", le="4.0") == 1
    )
    assert value(after, "process_resident_memory_bytes") > 0
