"""Cross-origin calls on the HTTP port (server/web/cors.py, web/edge.py), on real servers: none by
default (no grant, preflights refused 405); with --http-cors-origin, that one origin's preflights and
calls are granted, no other origin's (nor one a character away), and caches are told answers vary by
Origin. Every answer, whatever it is, says nosniff. The setting takes origins as browsers send them
and refuses anything else by its flag's name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from lstmserve.export.publish import export_checkpoint
from lstmserve.server.settings import Settings, SettingsError
from lstmserve.server.web.cors import PREFLIGHT_SECONDS

from ..conftest import CHARS, random_checkpoint
from ..servers import InProcessServer
from .rest_calls import infer_body, model_path, post_infer, session
from .test_generate import MODELS

ORIGIN = "http://app.example:3000"
TEXT = "text"  # a generative model (its outputs are its next inputs): generate_stream's events
X = np.ones((2, 3, 5), np.float32)  # (batch, time, input_size) for chars
INFER = f"{model_path(CHARS)}/infer"
# Origins a browser would send that are not ORIGIN, each a small step from it.
OTHER_ORIGINS = [
    "http://app.example:3000/",  # a slash: no browser sends one, and it is not the origin
    "http://APP.example:3000",  # case: an Origin is compared as sent
    "http://app.example:3001",
    "http://app.example",
    "https://app.example:3000",
    "http://app.example:3000.evil.example",
    "http://evil.example",
    "null",  # a sandboxed frame or a file: page
]


@pytest.fixture(scope="module")
def models(repository, tmp_path_factory) -> Path:
    """The serving tests' repository, and a text model to stream events from."""
    root = tmp_path_factory.mktemp("cors") / "models"
    shutil.copytree(repository, root)
    export_checkpoint(random_checkpoint(root.parent / "text.pt", 7, **MODELS["chars"]), root, TEXT)
    return root


@pytest.fixture(scope="module")
def plain(models):
    """A server with the defaults: no --http-cors-origin."""
    server = InProcessServer(Settings(repository=str(models))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cors(models):
    server = InProcessServer(Settings(repository=str(models), http_cors_origin=ORIGIN)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http():
    with session() as made:
        yield made


def preflight(http: requests.Session, url: str, origin: str) -> requests.Response:
    """What a browser asks before a page of `origin` POSTs JSON with a token."""
    asked = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return http.options(url + INFER, headers=asked, timeout=5)


def grants(answer: requests.Response) -> dict[str, str]:
    """The answer's access-control-* headers, by lower-case name."""
    return {
        name.lower(): value for name, value in answer.headers.items() if name.lower().startswith("access-")
    }


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def test_no_origin_is_granted_by_default(plain, http):
    answer = http.get(plain.http_url + "/v2", headers={"Origin": ORIGIN}, timeout=5)
    assert answer.status_code == 200 and grants(answer) == {} and "vary" not in answer.headers
    refused = preflight(http, plain.http_url, ORIGIN)
    assert refused.status_code == 405 and grants(refused) == {}
    assert "POST" in refused.json()["error"]


def test_the_origin_s_preflight_is_granted(cors, http):
    answer = preflight(http, cors.http_url, ORIGIN)
    assert answer.status_code == 204 and answer.content == b""
    granted = grants(answer)
    assert granted["access-control-allow-origin"] == ORIGIN
    assert listed(granted["access-control-allow-methods"]) == {"get", "post"}  # every route's method
    # What the console and a tritonclient-style page send: a token, JSON, binary tensors.
    assert listed(granted["access-control-allow-headers"]) >= {
        "authorization",
        "content-type",
        "inference-header-content-length",
    }
    assert granted["access-control-max-age"] == str(PREFLIGHT_SECONDS)
    assert "origin" in listed(answer.headers["vary"])


def test_the_origin_s_calls_are_granted_and_may_read_the_headers_a_client_acts_on(cors, http):
    url, origin = cors.http_url, {"Origin": ORIGIN}
    answers = [
        post_infer(http, url, CHARS, {"input": X}, headers=origin),
        post_infer(http, url, CHARS, {"input": X}, binary=True, headers=origin),
        post_infer(http, url, CHARS, {"input": np.ones((1, 3, 4), np.float32)}, headers=origin),
        http.get(url + "/v2", headers=origin, timeout=5),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 400, 200]
    for answer in answers:  # a refusal too: the page must be able to read why
        granted = grants(answer)
        assert granted["access-control-allow-origin"] == ORIGIN, answer.request.url
        assert listed(granted["access-control-expose-headers"]) >= {
            "inference-header-content-length",  # where the binary tensors start
            "lstmserve-limit",
            "retry-after",
            "www-authenticate",
        }
        assert "origin" in listed(answer.headers["vary"])


@pytest.mark.parametrize("origin", OTHER_ORIGINS)
def test_any_other_origin_is_granted_nothing(cors, http, origin):
    refused = preflight(http, cors.http_url, origin)
    assert refused.status_code == 405 and grants(refused) == {}
    answer = post_infer(http, cors.http_url, CHARS, {"input": X}, headers={"Origin": origin})
    # Served (a browser is what keeps the answer from the page), but with no grant; and a cache is
    # told that the answer depends on Origin, so it does not hand ORIGIN's grant to this one.
    assert answer.status_code == 200 and grants(answer) == {}
    assert "origin" in listed(answer.headers["vary"])


def test_a_call_with_no_origin_is_granted_nothing_but_varies_by_origin(cors, http):
    answer = http.get(cors.http_url + "/v2", timeout=5)
    assert answer.status_code == 200 and grants(answer) == {}
    assert "origin" in listed(answer.headers["vary"])


def every_kind_of_answer(http: requests.Session, url: str) -> dict[str, requests.Response]:
    """One answer of each kind the HTTP port gives, by what it is."""
    body, headers = infer_body({"input": X})
    generate = f"{url}{model_path(TEXT)}/generate_stream"
    return {
        "the console page": http.get(url + "/", timeout=5),
        "a console module": http.get(url + "/console/app.js", timeout=5),
        "console JSON": http.get(url + "/console/api/models", timeout=5),
        "health": http.get(url + "/v2/health/ready", timeout=5),
        "OIP JSON": http.post(url + INFER, data=body, headers=headers, timeout=5),
        "binary tensors": post_infer(http, url, CHARS, {"input": X}, binary=True),
        "a 400": post_infer(http, url, CHARS, {"input": np.ones((1, 3, 4), np.float32)}),
        "a 404": http.get(url + "/etc/passwd", timeout=5),
        "a 405": http.delete(url + model_path(CHARS), timeout=5),
        "a preflight": preflight(http, url, ORIGIN),
        "events": http.post(generate, json={"text_input": "a", "parameters": {"max_steps": 2}}, timeout=10),
        "an event stream's refusal": http.post(generate, json={"text_input": "z"}, timeout=5),
    }


@pytest.mark.parametrize("which", ["plain", "cors"])
def test_every_answer_says_nosniff(request, http, which):
    server = request.getfixturevalue(which)
    answers = every_kind_of_answer(http, server.http_url)
    assert answers["events"].headers["content-type"] == "text/event-stream"
    assert answers["an event stream's refusal"].status_code == 400
    assert answers["a preflight"].status_code == (204 if which == "cors" else 405)
    for kind, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", (kind, answer.status_code)


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example:3000/",  # a trailing slash
        "http://app.example:3000/console",  # a path
        "*",
        "app.example:3000",  # no scheme
        "//app.example",
        "ftp://x",
        "http://",
        "HTTP://APP.EXAMPLE",  # browsers send it in lower case: this would never match
        "http://app.example:3000?x=1",
        "http://app.example#x",
        "http://user@app.example",
        "http://app.example:3000\n",
        "http://app.example http://evil.example",  # one origin, not a list
        # Origins no browser sends, so no page would ever be granted: the scheme's own port (a
        # browser leaves it out), no host, no port after the colon, a port past 65535, two ports.
        "http://app.example:80",
        "https://app.example:443",
        "http://:3000",
        "http://app.example:",
        "http://app.example:99999",
        "http://app.example:3000:3000",
        "http://.",
    ],
)
def test_what_is_not_an_origin_is_refused_by_the_flag_s_name(origin):
    with pytest.raises(SettingsError, match="--http-cors-origin"):
        Settings(http_cors_origin=origin)


@pytest.mark.parametrize(
    "origin",
    [
        "",
        ORIGIN,
        "https://app.example.com",
        "http://localhost:3000",
        "http://127.0.0.1:8000",
        "http://[::1]:8080",
    ],
)
def test_origins_as_browsers_send_them_are_taken(origin):
    assert Settings(http_cors_origin=origin).http_cors_origin == origin
