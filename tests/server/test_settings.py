import argparse

import pytest

from lstmserve.server.settings import Settings, SettingsError, add_arguments, from_arguments


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
        (["--port", "70000"], {}, "port must be 0-65535, got 70000"),
        (["--device", "tpu"], {}, "device must be cpu or cuda, got 'tpu'"),
        (["--intra-op-threads", "0"], {}, "intra_op_threads must be at least 1"),
        (["--log-level", "loud"], {}, "log_level must be DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_values_are_named(argv, environ, message):
    with pytest.raises(SettingsError) as caught:
        parse(argv, environ)
    assert message in str(caught.value)
