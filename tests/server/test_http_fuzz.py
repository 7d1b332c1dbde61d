"""Property-based tests (hypothesis) of the HTTP edge: Open Inference Protocol requests with spoilt
fields, and spoilt or random bytes for every route, against the real server. Whatever arrives, every
answer is a well-formed HTTP response with a status under 500 and, for a refusal, a short printable
message (or the connection closes); nothing is logged at ERROR; the server answers a good request
after each example.

The requests come from tests/server/http_strategies.py. Runs are derandomized, as test_fuzz.py's:
CI sees the same examples every time (`--hypothesis-show-statistics` shows the statuses reached).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, event, given, settings

from lstmserve.server.settings import Settings

from ..raw_http import RawHttp, Response, request
from ..servers import InProcessServer
from .http_hostile import SHORT, good_infer, hostile_repository
from .http_strategies import oip_requests, raw_requests

TIMEOUT = 10  # seconds for any answer: a hang fails its example instead of wedging the run
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# After a raw example, a request that asks for the connection to close: the answers to what came
# before it (if any) are all read once the server closes, without waiting out an idle timeout.
LAST = request("GET", "/v2/health/live", {"Connection": "close"})


class Watch(logging.Handler):
    """What the server logs at WARNING or above (a traceback, uvicorn's "Exception in ASGI
    application", asyncio's transport complaints), on the server's thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.name.startswith(("uvicorn", "asyncio")):
            self.records.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server of chars and text with short timeouts, so that a request left incomplete costs
    half a second; and what it logs."""
    settings = Settings(
        repository=str(hostile_repository(tmp_path_factory.mktemp("fuzz"))),
        max_message_bytes=1 << 20,
        receive_seconds=0.5,
        http_idle_seconds=0.5,
    )
    watch = Watch()
    loggers = [logging.getLogger(name) for name in ("lstmserve", "uvicorn", "asyncio")]
    for logger in loggers:
        logger.addHandler(watch)
    running = InProcessServer(settings).start()
    yield running, watch
    running.stop()
    for logger in loggers:
        logger.removeHandler(watch)


def answers(port: int, data: bytes) -> list[Response]:
    """Every answer to `data`, until the server closes the connection."""
    got = []
    with RawHttp(port, TIMEOUT) as connection:
        connection.send(data)
        while (answer := connection.response()) is not None:
            got.append(answer)
    return got


def deliberate(answer: Response) -> None:
    """A status the server chose, under 500; a refusal's message short and printable."""
    assert answer.status < 500, (answer.status, answer.body[:500])
    if answer.status >= 400:
        assert len(answer.error) <= SHORT and answer.error.isprintable(), answer.body[:1000]
    if answer.header("content-type") == "text/event-stream":
        for line in answer.body.split(b"\n"):
            assert not line.startswith(b"data: ") or len(line) < 1 << 20, line[:200]
        errors = [event for event in answer.body.split(b"\n\n") if event.startswith(b"event: error")]
        assert all(len(error) <= SHORT + 40 for error in errors), errors
    event(f"{answer.status}: {answer.error[:30] if answer.status >= 400 else ''}")


def still_serving(served) -> None:
    server, watch = served
    logged, watch.records = watch.records, []
    assert not logged, logged
    good_infer(server.http_port)


@FUZZ
@given(call=oip_requests())
def test_infer_answers_any_json_deliberately(served, call):
    target, headers, body = call
    got = answers(served[0].http_port, request("POST", target, {**headers, "Connection": "close"}, body))
    assert len(got) == 1, got
    deliberate(got[0])
    still_serving(served)


@settings(FUZZ, max_examples=80)
@given(call=oip_requests(generate=True))
def test_generate_answers_any_json_deliberately(served, call):
    target, headers, body = call
    got = answers(served[0].http_port, request("POST", target, {**headers, "Connection": "close"}, body))
    assert len(got) == 1, got
    deliberate(got[0])
    still_serving(served)


@settings(FUZZ, max_examples=200)
@given(data=raw_requests())
def test_any_bytes_to_any_route_get_a_deliberate_answer_or_a_close(served, data):
    for answer in answers(served[0].http_port, data + LAST):
        deliberate(answer)
    still_serving(served)
