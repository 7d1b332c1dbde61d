"""The one error path: an exception anywhere in a call becomes one status, logged and counted once."""

import shutil
import threading
import time

import numpy as np
import pytest

from lstmserve.client import Client, ServerError

from ..conftest import CHARS
from ..servers import ServerProcess, free_port
from .broken_models import fail_unless_rows_of
from .test_metrics import grpc_calls, scrape, value

CALLERS = 6


def test_a_batch_that_fails_in_onnxruntime_fails_each_of_its_callers_with_internal(repository, tmp_path):
    """chars v1 rewritten so a run fails unless its output holds a multiple of 13 values. A long call
    keeps the lane busy while six one-row callers queue; they run merged (6 x 1 x 7 values) and each
    gets INTERNAL, counted under its model; then a 13-row call on the same model works and chars v2
    still answers."""
    root = tmp_path / "models"
    shutil.copytree(repository / CHARS, root / CHARS)
    fail_unless_rows_of(root / CHARS / "1" / "model.onnx", 13)
    port = free_port()
    # One chunk of 300,000 steps (0.36 s of onnxruntime here, off the loop) holds the lane while the
    # rest queue: a 6 MB request and an 8.4 MB answer, so larger messages than the default.
    steps = 300_000
    limits = ("--max-request-steps", str(steps), "--max-request-row-steps", str(steps))
    server = ServerProcess(root, "--metrics-port", str(port), *limits, "--max-message-bytes", str(16 << 20))
    long = np.ones((1, steps, 5), np.float32)
    codes: list[str] = []
    connected = threading.Barrier(CALLERS + 1)
    queued = threading.Event()  # the long call is in the lane

    def call(client: Client, x: np.ndarray) -> None:
        try:
            client.infer(CHARS, x, version=1)
            codes.append("OK")
        except ServerError as exc:
            codes.append(f"{exc.code.name}: {exc.details}")

    def caller() -> None:
        with Client(server.address) as client:
            client.model(CHARS)  # connected before the race starts
            connected.wait()
            assert queued.wait(30)
            call(client, np.ones((1, 1, 5), np.float32))

    try:
        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        connected.wait()
        with Client(server.address) as client:
            threads.append(threading.Thread(target=call, args=(client, long)))
            threads[-1].start()
            # Started 20 ms after the long call, the callers sometimes came before it reached the lane
            # (1 run in 8 on a loaded machine). It has once the server reserved its answer's bytes too:
            # its request reserves 2 x 6 MB (the bytes, and the message parsed), its answer 2 x 8.4 MB,
            # just before it joins the lane.
            deadline = time.monotonic() + 30
            while value(scrape(port), "lstmserve_inflight_bytes") <= 3 * long.nbytes:
                assert time.monotonic() < deadline and threads[-1].is_alive(), codes
                time.sleep(0.005)
            queued.set()
            for thread in threads:
                thread.join(30)
        with Client(server.address) as client:
            assert client.infer(CHARS, np.ones((13, 1, 5)), version=1).output.shape == (7, 13)  # reshaped
            assert client.infer(CHARS, np.ones((1, 1, 5)), version=2).output.shape == (1, 1, 7)
        samples = scrape(port)
    finally:
        queued.set()
        assert server.terminate() == 0
    assert codes == ["INTERNAL: internal error; the server logged it"] * (CALLERS + 1)
    runs = value(samples, "lstmserve_batch_requests_count", model="chars:1")
    requests = value(samples, "lstmserve_batch_requests_sum", model="chars:1")
    assert requests == CALLERS + 2 and runs < requests - 1, (runs, requests)  # failed runs held several
    internal = grpc_calls(samples, "chars:1", "Infer", "INTERNAL")
    assert internal == CALLERS + 1
    log = "".join(server.log)
    assert log.count("Infer failed unexpectedly") == CALLERS + 1, log  # each caller's failure, once
    assert "Exception not handled" not in log and "UNKNOWN" not in log


def test_an_unexpected_failure_is_internal_logged_once_and_counted(repository, tmp_path):
    """A model that loads but fails when run (a broken export): INTERNAL with a short message, its
    traceback logged once, the call counted as INTERNAL under its model, and the server goes on."""
    root = tmp_path / "models"
    shutil.copytree(repository / CHARS, root / CHARS)
    fail_unless_rows_of(root / CHARS / "1" / "model.onnx", 13)  # a (1, 1, 7) output cannot be
    port = free_port()
    server = ServerProcess(root, "--metrics-port", str(port))
    try:
        with Client(server.address) as client:
            with pytest.raises(ServerError) as caught:
                client.infer(CHARS, np.ones((1, 1, 5)), version=1)
            assert caught.value.code.name == "INTERNAL"
            assert caught.value.details == "internal error; the server logged it"
            assert client.infer(CHARS, np.ones((1, 1, 5)), version=2).output.shape == (1, 1, 7)
        samples = scrape(port)
    finally:
        assert server.terminate() == 0
    log = "".join(server.log)
    assert log.count("Infer failed unexpectedly") == 1 and log.count("Traceback") == 1
    assert grpc_calls(samples, "chars:1", "Infer", "INTERNAL") == 1


def test_only_a_refusal_by_a_limit_has_trailing_metadata():
    from lstmserve.server.errors import InvalidArgument, trailing_metadata

    limited = InvalidArgument("input has 2000 rows; ...", limit="max_request_rows")
    assert trailing_metadata(limited) == (("lstmserve-limit", "max_request_rows"),)
    assert trailing_metadata(InvalidArgument("input must be float32")) == ()
    assert trailing_metadata(RuntimeError("a bug")) == ()
