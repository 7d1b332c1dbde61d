"""generate_stream over HTTP: Server-Sent Events, one per step, then the state. The steps are gRPC
Generate's for the same prompt, seed and options, bit for bit; the final state continues the
sequence; the bounds refuse before the stream starts; a client that goes stops the generation."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import orjson
import pytest
import requests

from lstmserve.client import Client, State
from lstmserve.client.generation import choices_of
from lstmserve.export.publish import export_checkpoint
from lstmserve.limits import DEFAULT_LIMITS as LIMITS
from lstmserve.server.settings import Settings

from ..conftest import random_checkpoint
from ..servers import InProcessServer, free_port
from .rest_calls import bits, json_inputs, model_path, session
from .test_generate import MODELS, one_hot
from .test_metrics import scrape, value

LABELS = "".join(MODELS["chars"]["labels"])  # "abcde ": one-hot characters in and out
SERVED = ("chars", "tagger", "big")
MAX_STEPS = 5000  # the server's --max-generate-steps: seconds of steps for the big model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate")
    for seed, name in enumerate(SERVED):
        export_checkpoint(
            random_checkpoint(folder / f"{name}.pt", seed, **MODELS[name]), folder / "models", name
        )
    settings = Settings(
        repository=str(folder / "models"), max_generate_steps=MAX_STEPS, metrics_port=free_port()
    )
    running = InProcessServer(settings).start()
    running.metrics_port = settings.metrics_port
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with session() as made:
        yield made, server.http_url


def generate_stream(http, model: str, request: dict) -> requests.Response:
    session, url = http
    return session.post(f"{url}{model_path(model)}/generate_stream", data=orjson.dumps(request), timeout=30)


def events(body: bytes) -> list[dict]:
    """Server-Sent Events: `data: <JSON>` blocks split by blank lines (an error is `event: error`)."""
    parsed = []
    for block in body.decode().split("\n\n"):
        if block:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            assert set(fields) <= {"event", "data"}, block
            parsed.append({**json.loads(fields["data"]), **{k: v for k, v in fields.items() if k != "data"}})
    return parsed


def generated(http, request: dict, model: str = "chars") -> list[dict]:
    """A generation that must succeed: its events, the steps' and then the state's, none an error."""
    answer = generate_stream(http, model, request)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"] == "text/event-stream"
    sent = events(answer.content)
    assert all("event" not in event for event in sent), sent[-1]
    assert [event["step"] for event in sent] == [*range(1, len(sent)), 0]
    return sent


def state_of(final: dict) -> State:
    """The final event's state (JSON data, read as float32) as the gRPC client's State."""
    arrays = {t["name"]: np.array(t["data"], np.float32).reshape(t["shape"]) for t in final["outputs"]}
    layers = len(arrays) // 2
    return State(
        final["parameters"]["state_fingerprint"],
        tuple((arrays[f"final_c_{layer}"], arrays[f"final_h_{layer}"]) for layer in range(layers)),
    )


def text_prompt(text: str) -> np.ndarray:
    return one_hot(np.array([LABELS.index(char) for char in text]), len(LABELS)).transpose(1, 0, 2)


def same_steps(steps: list[dict], want) -> None:
    """REST's step events are gRPC's steps: the same choices, the same logits' bits."""
    np.testing.assert_array_equal(np.array([step["choices"] for step in steps]).T, choices_of(want))
    logits = np.array([step["logits"] for step in steps], np.float32)
    np.testing.assert_array_equal(bits(logits), bits(np.stack([step.logits for step in want])))


def same_state(state: State, want: State) -> None:
    assert state.fingerprint == want.fingerprint
    for mine, theirs in zip(state.layers, want.layers):
        np.testing.assert_array_equal(bits(np.stack(mine)), bits(np.stack(theirs)))


def test_a_text_prompt_streams_grpcs_steps_and_ends_with_the_state(server, http):
    options = dict(max_steps=20, temperature=1.5, top_k=4, seed=7)
    *steps, final = generated(http, {"text_input": "abc d", "parameters": options})
    with Client(server.address) as client:
        want = client.generate("chars", text_prompt("abc d"), **options)
        want_steps = want.steps()
    assert len(steps) == 20 and steps[0]["seed"] == 7 and all("seed" not in step for step in steps[1:])
    assert all(step["model_name"] == "chars" and step["model_version"] == "1" for step in steps)
    same_steps(steps, want_steps)
    chosen = [step["choices"][0] for step in steps]
    assert "".join(step["text_output"] for step in steps) == "".join(LABELS[c] for c in chosen)
    same_state(state_of(final), want.state)


def test_an_inputs_prompt_with_a_state_continues_as_over_grpc(server, http):
    """The final event's state, sent back as infer's initial_* tensors with its fingerprint, goes on
    exactly as gRPC Generate from the same state: the state a stream ends with is whole."""
    prompt = np.random.default_rng(2).random((2, 3, 6), dtype=np.float32)
    first = generated(http, {"inputs": json_inputs({"input": prompt}), "parameters": {"max_steps": 4}})
    state = state_of(first[-1])
    cells = {
        f"initial_{part}_{layer}": array
        for layer, pair in enumerate(state.layers)
        for part, array in zip("ch", pair)
    }
    parameters = {"max_steps": 6, "state_fingerprint": state.fingerprint}
    *steps, final = generated(
        http, {"inputs": json_inputs({"input": prompt, **cells}), "parameters": parameters}
    )
    with Client(server.address) as client:
        want = client.generate("chars", prompt, max_steps=4)
        want.steps()
        again = client.generate("chars", prompt, max_steps=6, state=want.state)
        want_steps = again.steps()
    same_state(state, want.state)
    assert all("text_output" not in step for step in steps)  # two rows: no one text
    same_steps(steps, want_steps)
    same_state(state_of(final), again.state)


def test_a_stop_character_ends_a_text_generation(http):
    options = {"max_steps": 60, "temperature": 1.0, "seed": 3}
    free = [
        event["text_output"] for event in generated(http, {"text_input": "a", "parameters": options})[:-1]
    ]
    stop = free[4]  # the character chosen at step 5 (or before)
    ended = generated(http, {"text_input": "a", "parameters": {**options, "stop": stop}})[:-1]
    assert [event["text_output"] for event in ended] == free[: free.index(stop) + 1]  # up to the stop


def asked(text: str | None = "ab", model: str = "chars", **parameters) -> tuple[str, dict]:
    """A generation's model and request: max_steps 3 unless `parameters` say otherwise."""
    request: dict = {"parameters": {"max_steps": 3, **parameters}}
    if text is not None:
        request["text_input"] = text
    return model, request


STEPS_RANGE = f"max_steps must be in [1, {MAX_STEPS}]"
REFUSALS = {  # (model, request), status, words, the limit's name
    "max_steps over the server's": (asked(max_steps=MAX_STEPS + 1), 400, STEPS_RANGE, "max_generate_steps"),
    "max_steps 0": (asked(max_steps=0), 400, STEPS_RANGE, None),
    "max_steps a string": (asked(max_steps="3"), 400, "parameter max_steps has the wrong type", None),
    "an unknown character": (asked("abz"), 400, "characters chars does not know: 'z'", None),
    "a prompt over the steps": (
        asked("a" * (LIMITS.max_request_steps + 1)),
        413,
        "(--max-request-steps",
        "max_request_steps",
    ),
    "no prompt": (asked(None), 400, 'give the prompt as "text_input" or as "inputs"', None),
    "an unknown stop": (asked(stop="z"), 400, "stop: 'z' is not one of", None),
    "a stop class past int32": (asked(stop_classes=[2**63]), 400, "stop_classes must be a list", None),
    "a model that cannot": (asked(model="tagger"), 400, "cannot feed its output back", None),
    "an unknown model": (asked(model="nope"), 404, "unknown model 'nope'", None),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_generation_is_refused_before_the_stream_starts(http, case):
    (model, request), status, words, limit = REFUSALS[case]
    answer = generate_stream(http, model, request)
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"] == "application/json"  # no event stream began
    assert words in answer.json()["error"]
    assert answer.headers.get("lstmserve-limit") == limit


def test_a_client_that_goes_stops_its_generation(server, http):
    """While it streams, other calls are answered; the connection closed after a few events, the
    stream closes and no more runs happen for it."""

    def samples() -> dict:
        return scrape(server.metrics_port)

    def runs(seen: dict) -> float:
        return value(seen, "lstmserve_compute_seconds_count", model="big:1")

    before = runs(samples())
    prompt = {
        "inputs": json_inputs({"input": np.zeros((1, 1, 8), np.float32)}),
        "parameters": {"max_steps": MAX_STEPS},
    }
    request = orjson.dumps(prompt)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=20) as sock:
        sock.sendall(
            f"POST {model_path('big')}/generate_stream HTTP/1.1\r\nHost: lstmserve\r\n"
            f"Content-Length: {len(request)}\r\n\r\n".encode()
            + request
        )
        received = b""
        while received.count(b"\n\n") < 6:  # the response's head, then five events
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert b"text/event-stream" in received
        with Client(server.address) as client:  # the same event loop serves other calls meanwhile
            assert client.infer("chars", np.zeros((1, 1, 6), np.float32)).logits.shape == (1, 1, 6)
        assert value(samples(), "lstmserve_streams_in_flight") == 1
    deadline = time.monotonic() + 10
    while value(seen := samples(), "lstmserve_streams_in_flight") != 0:
        assert time.monotonic() < deadline, "the stream stayed open after its client went"
        time.sleep(0.02)
    stopped = runs(seen)
    time.sleep(0.5)
    ended = samples()
    assert runs(ended) == stopped < before + MAX_STEPS  # nothing ran after, and not every step had
    cancelled = dict(model="big:1", protocol="http", method="GenerateStream", code="CANCELLED")
    assert value(ended, "lstmserve_requests_total", **cancelled) == 1
    assert generated(http, {"text_input": "a", "parameters": {"max_steps": 2}})  # still serving


def test_each_event_is_counted_as_grpcs_stream_messages_are(server, http):
    count = dict(model="chars:1", protocol="http", method="GenerateStream", code="OK")
    before = value(scrape(server.metrics_port), "lstmserve_requests_total", **count)
    sent = generated(http, {"text_input": "ab", "parameters": {"max_steps": 9}})
    assert len(sent) == 10  # nine steps and the state
    assert value(scrape(server.metrics_port), "lstmserve_requests_total", **count) - before == 10
