import argparse
import subprocess
import sys
from dataclasses import fields

import pytest

from lstmserve.server.settings import Settings, SettingsError, add_arguments, from_arguments, settings_table

from ..conftest import REPO


def parse(argv, environ=None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv), environ or {})


def test_defaults_bind_loopback():
    settings = parse([])
    assert (
        settings.address == "127.0.0.1:50051" and settings.repository == "models" and settings.device == "cpu"
    )


def test_flags_beat_environment_beat_defaults():
    environ = {"LSTMSERVE_PORT": "6000", "LSTMSERVE_HOST": "0.0.0.0", "LSTMSERVE_GRACE_SECONDS": "2.5"}
    settings = parse(["--port", "7000"], environ)
    assert settings.port == 7000 and settings.host == "0.0.0.0" and settings.grace_seconds == 2.5


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"LSTMSERVE_PORT": "fifty"}, "LSTMSERVE_PORT='fifty' is not a valid int"),
        (["--port", "70000"], {}, "--port (LSTMSERVE_PORT) must be 0-65535, got 70000"),
        (["--device", "tpu"], {}, "--device (LSTMSERVE_DEVICE) must be cpu or cuda, got 'tpu'"),
        (
            ["--cuda-mem-limit-mb", "-1"],
            {},
            "--cuda-mem-limit-mb (LSTMSERVE_CUDA_MEM_LIMIT_MB) must not be negative",
        ),
        ([], {"LSTMSERVE_CUDA_ARENA": "huge"}, "LSTMSERVE_CUDA_ARENA"),
        ([], {"LSTMSERVE_CUDA_TF32": "yes"}, "LSTMSERVE_CUDA_TF32"),
        (
            ["--max-generate-steps", "0"],
            {},
            "--max-generate-steps (LSTMSERVE_MAX_GENERATE_STEPS) must be at least 1",
        ),
        (
            ["--intra-op-threads", "0"],
            {},
            "--intra-op-threads (LSTMSERVE_INTRA_OP_THREADS) must be at least 1",
        ),
        (["--health-port", "-1"], {}, "--health-port (LSTMSERVE_HEALTH_PORT) must be 0-65535, got -1"),
        (
            [],
            {"LSTMSERVE_RECEIVE_SECONDS": "0"},
            "--receive-seconds (LSTMSERVE_RECEIVE_SECONDS) must be positive, got 0.0",
        ),
        (
            ["--keepalive-seconds", "-1"],
            {},
            "--keepalive-seconds (LSTMSERVE_KEEPALIVE_SECONDS) must not be negative, got -1.0",
        ),
        (
            ["--max-queue-rows", "10", "--max-request-rows", "20"],
            {},
            "--max-queue-rows (LSTMSERVE_MAX_QUEUE_ROWS) (10) must be at least "
            "--max-request-rows (LSTMSERVE_MAX_REQUEST_ROWS) (20)",
        ),
        (
            ["--log-level", "loud"],
            {},
            "--log-level (LSTMSERVE_LOG_LEVEL) must be DEBUG, INFO, WARNING or ERROR",
        ),
    ],
)
def test_bad_values_are_named(argv, environ, message):
    with pytest.raises(SettingsError) as caught:
        parse(argv, environ)
    assert message in str(caught.value)


def test_python_callers_meet_the_same_bounds():
    with pytest.raises(
        SettingsError, match=r"--max-streams \(LSTMSERVE_MAX_STREAMS\) must be at least 1, got 0"
    ):
        Settings(max_streams=0)
    assert Settings(log_level="debug").log_level == "debug"  # any case


def test_docs_settings_table_is_the_rendered_one():
    # docs/serving.md's table is generated: after changing a setting, paste the output of
    #   python -m lstmserve.server.settings --markdown
    # between the markers.
    text = (REPO / "docs" / "serving.md").read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    assert start in text and end in text, "docs/serving.md lost its settings-table markers"
    documented = text[text.index(start) + len(start) : text.index(end)]
    assert documented == settings_table(), "run: python -m lstmserve.server.settings --markdown"


def test_table_has_a_row_per_flag_with_readable_defaults():
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(fields(Settings))
    row = "| `--max-message-bytes` | `LSTMSERVE_MAX_MESSAGE_BYTES` | 4194304 | largest request"
    assert sum(line.startswith(row) for line in rows) == 1


def test_markdown_entry_point_prints_the_table():
    done = subprocess.run(
        [sys.executable, "-m", "lstmserve.server.settings", "--markdown"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == settings_table(), done.stderr


def test_the_limits_a_client_knows_are_settings_of_the_same_names_and_defaults():
    from lstmserve.limits import DEFAULT_LIMITS

    for field in fields(DEFAULT_LIMITS):
        assert getattr(Settings(), field.name) == getattr(DEFAULT_LIMITS, field.name), field.name
