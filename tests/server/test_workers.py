import http.client
import json
import re
import signal
import time

import numpy as np

from lstmserve.client import Client

from ..conftest import DIGITS
from ..servers import ServerProcess


def test_workers_share_one_port_and_stop_together(repository):
    server = ServerProcess(repository, "--workers", "2")
    deadline = time.monotonic() + 30
    while sum("listening on" in line for line in server.log) < 2:  # both workers bound
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)
    try:
        x = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
        answers = []
        for _ in range(16):  # the kernel spreads connections, so each client is its own connection
            with Client(server.address) as client:
                answers.append(client.infer(DIGITS, x).logits)
        for answer in answers[1:]:
            np.testing.assert_array_equal(answer, answers[0])  # any worker, the same answer
        server.process.send_signal(signal.SIGHUP)  # a rescan, passed on to the workers
        time.sleep(0.5)
        assert server.process.poll() is None, server.log
        with Client(server.address) as client:
            np.testing.assert_array_equal(client.infer(DIGITS, x).logits, answers[0])
    finally:
        assert server.terminate() == 0
    stops = [line for line in server.log if "stopped:" in line]
    served = {
        re.search(r"\[(\d+)\]", line).group(1): int(re.search(r"stopped: (\d+) requests", line).group(1))
        for line in stops
    }
    assert len(served) == 2 and all(count > 0 for count in served.values()), stops
    assert any("workers stopped (exit codes [0, 0])" in line for line in server.log)


def test_workers_that_cannot_start_say_why_in_one_line(tmp_path):
    """A bad repository under --workers: one `cannot start` line, before any worker starts, no
    traceback, and the command exits 1, as a single server does."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lstmserve", "serve", "--workers", "2", "--port", "0"]
        + ["--repository", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("cannot start: model repository") == 1, done.stderr
    assert "Traceback" not in done.stderr and "started" not in done.stderr, done.stderr


def test_workers_share_one_http_port(repository):
    """HTTP under --workers: one port (chosen once, by the parent, for --http-port 0), every worker
    accepting on it; the kernel spreads the connections, and any worker gives the same answer."""
    server = ServerProcess(repository, "--workers", "2")
    deadline = time.monotonic() + 30
    while sum("listening on" in line for line in server.log) < 2:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)
    ports = {
        int(m.group(1)) for line in server.log if (m := re.search(r"HTTP .* on http://[^ ]+:(\d+)/v2", line))
    }
    try:
        assert len(ports) == 1, server.log
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8, 8], "data": [0.5] * 64}]}
        (port,) = ports
        answers = []
        for _ in range(16):  # a connection each
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", f"/v2/models/{DIGITS}/infer", json.dumps(body))
            answers.append(json.loads(connection.getresponse().read())["outputs"])
            connection.close()
        assert all(answer == answers[0] for answer in answers)
    finally:
        assert server.terminate() == 0
    served = [
        int(re.search(r"stopped: (\d+) requests", line).group(1)) for line in server.log if "stopped:" in line
    ]
    assert len(served) == 2 and all(count > 0 for count in served), served
