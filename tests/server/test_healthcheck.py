"""`python -m lstmserve.server.healthcheck`, the image's HEALTHCHECK, run as the container runs it,
against the real server."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import DIGITS
from ..servers import free_port


def healthcheck(*args: str, port: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMSERVE_")}
    if port is not None:
        env["LSTMSERVE_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-m", "lstmserve.server.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_help_says_what_it_checks_and_asks_nothing():
    done = healthcheck("--help", port=free_port())  # was: asked the server for a service "--help"
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m lstmserve.server.healthcheck")
    assert "LSTMSERVE_HEALTH_PORT" in done.stdout and "NOT_FOUND" not in done.stdout + done.stderr


def test_serving_overall_and_per_model_and_not_found(server):
    overall = healthcheck(port=server.port)
    assert overall.returncode == 0 and overall.stdout.strip().endswith("(overall): SERVING"), overall
    assert healthcheck(DIGITS, port=server.port).returncode == 0
    unknown = healthcheck("nope", port=server.port)
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


def test_no_server_is_unhealthy():
    done = healthcheck(port=free_port())
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr
