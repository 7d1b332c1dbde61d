"""What the hostile HTTP tests share: a repository with a model to infer and one to generate from, a
server process on it, the good requests that show a server still serves, and the check that its log
holds no trouble."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from ..conftest import random_checkpoint
from ..raw_http import Response, exchange, request
from ..servers import ServerProcess

CHARS, TEXT = "chars", "text"  # chars: 5 inputs, 4 outputs a step; text: 4 one-hot characters in and out
INFER = f"/v2/models/{CHARS}/infer"
GENERATE = f"/v2/models/{TEXT}/generate_stream"
# A line the server logged at WARNING or above (our catch-all's "failed unexpectedly", uvicorn's
# "Exception in ASGI application", asyncio's complaints about its transports), or a traceback's first.
# Matched by the log format's level field: a client's text in a refusal's line (a model named
# "chars\nERROR forged") is escaped onto that INFO line and cannot start one of its own.
TROUBLE = re.compile(r"^(?:\S+ \S+ (?:WARNING|ERROR|CRITICAL) |Traceback).*$", re.MULTILINE)
SHORT = 400  # characters in a refusal's message: enough to name the problem, too few to echo a request


def hostile_repository(folder: Path) -> Path:
    """chars v1 (5 inputs, (12, 7), per_step, 4 outputs) and text v1 (a, b, c, d in and out: it
    generates)."""
    from lstmserve.export.publish import export_checkpoint

    root = folder / "models"
    chars = random_checkpoint(
        folder / "chars.pt", 1, input_size=5, hidden_sizes=(12, 7), head="per_step", num_outputs=4
    )
    export_checkpoint(chars, root, CHARS)
    text = random_checkpoint(
        folder / "text.pt",
        2,
        input_size=4,
        hidden_sizes=(8,),
        head="per_step",
        num_outputs=4,
        labels=tuple("abcd"),
    )
    export_checkpoint(text, root, TEXT)
    return root


def infer_body(steps: int = 3, **extra: object) -> bytes:
    """A good JSON infer request for chars: (1, steps, 5) ones, flat."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, steps, 5], "data": [1.0] * (steps * 5)}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def good_infer(port: int, headers: dict[str, str] | None = None) -> Response:
    """One good infer request on a fresh connection; it must be answered 200."""
    answer = exchange(port, request("POST", INFER, headers, infer_body()))
    assert answer is not None and answer.status == 200, answer
    assert answer.json()["outputs"][0]["shape"] == [1, 3, 7]
    return answer


def refused(answer: Response | None, status: int, *words: str) -> None:
    """`answer` is a refusal with `status` and a short message holding `words`."""
    assert answer is not None, "the connection closed without an answer"
    assert answer.status == status, (answer.status, answer.body[:300])
    # Every answer, the connection's own (400, 408, 414, 431) too: a browser takes it as its type says.
    assert answer.header("x-content-type-options") == "nosniff"
    message = answer.error
    assert len(message) <= SHORT and message.isprintable(), message[:1000]
    for word in words:
        assert word in message, (word, message)


def trouble_in(log: str) -> list[str]:
    return [match.group(0) for match in TROUBLE.finditer(log)]


def hostile_server(folder: Path, *args: str, secret: str = "") -> Iterator[ServerProcess]:
    """`lstmserve serve` on hostile_repository(folder) with `args`, for a module fixture to `yield
    from`: afterwards it must stop cleanly, with no trouble (nor `secret`) in its log."""
    running = ServerProcess(hostile_repository(folder), *args)
    yield running
    assert running.terminate() == 0
    log = "".join(running.log)
    assert not trouble_in(log) and not (secret and secret in log), log


def post(body: bytes, headers=None, target: str = INFER) -> bytes:
    """A POST's bytes, to infer unless `target` says otherwise."""
    return request("POST", target, headers, body)
