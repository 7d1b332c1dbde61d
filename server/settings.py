"""Settings: one object, read from flags, then LSTMSERVE_* environment variables, then defaults.

Each field is declared once, with lstmserve.config.setting: its flag, variable, --help line and row in
docs/serving.md's table (`python -m lstmserve.server.settings --markdown` prints it) all come from it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from lstmserve.config import add_flags, flag_of, from_args, markdown_table, setting
from lstmserve.errors import LstmServeError
from lstmserve.layout import DEFAULT_REPOSITORY

ENV_PREFIX = "LSTMSERVE_"


class SettingsError(LstmServeError, ValueError):
    """A flag or environment variable with a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "address to bind; 0.0.0.0 to listen on every interface")
    port: int = setting(50051, "port to bind; 0 picks a free one (logged at start)")
    repository: str = setting(DEFAULT_REPOSITORY, "model repository: NAME/VERSION/model.onnx")
    device: str = setting("cpu", "cpu, or cuda (falls back to cpu with a warning where absent)")
    cuda_device_id: int = setting(0, "with --device cuda: the GPU to run on")
    cuda_mem_limit_mb: int = setting(
        0, "with --device cuda: most GPU memory onnxruntime's arena may take; 0: no limit"
    )
    cuda_arena: str = setting(
        "next_power_of_two",
        "with --device cuda: how the GPU arena grows (next_power_of_two, or same_as_requested: no slack)",
        choices=("next_power_of_two", "same_as_requested"),
    )
    cuda_tf32: str = setting(
        "off",
        "with --device cuda: on lets cuDNN and cuBLAS round to TF32 (faster; answers drift ~1e-3 from fp32)",
        choices=("off", "on"),
    )
    intra_op_threads: int = setting(1, "onnxruntime threads per call (1 suits streaming chunks)")
    inference_threads: int = setting(0, "threads for runs too long for the event loop; 0 = one per core")
    max_batch_rows: int = setting(64, "rows merged into one onnxruntime run; 0 turns batching off")
    max_delay_ms: float = setting(
        2.0,
        "longest a batch gathers calls; it stops sooner once 0.3 ms pass with no call joining",
    )
    max_queue_rows: int = setting(1024, "rows waiting per model version before RESOURCE_EXHAUSTED")
    max_inline_steps: int = setting(256, "runs of up to rows x steps this size stay on the event loop thread")
    max_message_bytes: int = setting(4 * 1024 * 1024, "largest request or response message")
    max_request_rows: int = setting(1024, "rows (batch) in one request")
    max_request_steps: int = setting(16384, "time steps in one request's chunk")
    max_request_row_steps: int = setting(
        32768, "rows x steps in one request, and in one merged onnxruntime run (bounds its memory)"
    )
    max_inflight_bytes: int = setting(
        128 * 1024 * 1024, "request, response and stream-state bytes held by all calls at once"
    )
    max_generate_steps: int = setting(4096, "most steps one Generate call may ask for")
    max_calls: int = setting(1024, "unary calls in flight at once; past it, RESOURCE_EXHAUSTED")
    max_streams: int = setting(64, "open StreamInfer and Generate calls; past it, RESOURCE_EXHAUSTED")
    receive_seconds: float = setting(
        10.0, "how long a unary call may take to send its request; past it, DEADLINE_EXCEEDED"
    )
    stream_idle_seconds: float = setting(
        60.0, "a stream that neither sends nor reads for this long ends with UNAVAILABLE"
    )
    stall_seconds: float = setting(
        30.0, "a model whose waiting work makes no progress this long turns health NOT_SERVING"
    )
    grace_seconds: float = setting(10.0, "on SIGTERM/SIGINT, how long calls in flight may finish")
    max_connection_age_seconds: float = setting(
        300.0, "a connection this old is told to go (GOAWAY) and reconnects, maybe elsewhere; 0: never"
    )
    max_connection_age_grace_seconds: float = setting(
        30.0, "how long calls on an aged-out connection may go on before it closes"
    )
    keepalive_seconds: float = setting(
        60.0, "ping a connection idle this long; one that does not answer within 20 s is closed"
    )
    min_client_ping_seconds: float = setting(
        10.0, "clients may ping this often, idle or not; more often and the server closes the connection"
    )
    tls_cert: str = setting("", "PEM certificate chain: with --tls-key, the serving port speaks TLS only")
    tls_key: str = setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = setting(
        "", "PEM CA certificates: clients must present a certificate one of them signed (mTLS)"
    )
    auth_tokens: str = setting(
        "", "file of bearer tokens (one a line, each optionally followed by the models it may call)"
    )
    state_key_file: str = setting(
        "", "file of AES-256 keys (64 hex digits a line; the first seals, any opens): seal every state"
    )
    state_max_age_seconds: float = setting(
        0.0, "with --state-key-file, refuse sealed states older than this; 0: any age"
    )
    health_port: int = setting(
        0, "a plaintext port serving only grpc.health.v1, for probes when --tls-cert is set; 0: off"
    )
    metrics_port: int = setting(0, "Prometheus metrics over HTTP on this port; 0: off")
    poll_interval: float = setting(5.0, "seconds between rescans of the repository (0: only on SIGHUP)")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    workers: int = setting(
        1, "server processes sharing the port (SO_REUSEPORT); one per core on big machines"
    )

    def __post_init__(self) -> None:
        for name in ("port", "health_port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"{_named(name)} must be 0-65535, got {getattr(self, name)}")
        if self.device not in ("cpu", "cuda"):
            raise SettingsError(f"{_named('device')} must be cpu or cuda, got {self.device!r}")
        if self.cuda_arena not in ("next_power_of_two", "same_as_requested"):
            raise SettingsError(
                f"{_named('cuda_arena')} must be next_power_of_two or same_as_requested, "
                f"got {self.cuda_arena!r}"
            )
        if self.cuda_tf32 not in ("off", "on"):
            raise SettingsError(f"{_named('cuda_tf32')} must be off or on, got {self.cuda_tf32!r}")
        for name in (
            "intra_op_threads",
            "max_message_bytes",
            "workers",
            "max_request_rows",
            "max_request_steps",
            "max_request_row_steps",
            "max_calls",
            "max_streams",
            "max_generate_steps",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_named(name)} must be at least 1, got {getattr(self, name)}")
        for name in (
            "inference_threads",
            "grace_seconds",
            "max_batch_rows",
            "max_delay_ms",
            "max_inline_steps",
            "poll_interval",
            "cuda_device_id",
            "cuda_mem_limit_mb",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{_named(name)} must not be negative, got {getattr(self, name)}")
        if self.max_queue_rows < self.max_request_rows:
            # Otherwise a request could be told to retry when it can never fit the queue.
            raise SettingsError(
                f"{_named('max_queue_rows')} ({self.max_queue_rows}) must be at least "
                f"{_named('max_request_rows')} ({self.max_request_rows})"
            )
        if self.max_inflight_bytes < 4 * self.max_message_bytes:
            # A call holds its request and its response, each counted twice (bytes and decoded form).
            raise SettingsError(
                f"{_named('max_inflight_bytes')} ({self.max_inflight_bytes}) must be at least 4 x "
                f"--max-message-bytes ({4 * self.max_message_bytes}), or a largest request and answer "
                "could never be admitted"
            )
        for name in (
            "max_connection_age_seconds",
            "max_connection_age_grace_seconds",
            "keepalive_seconds",
            "state_max_age_seconds",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{_named(name)} must not be negative, got {getattr(self, name)}")
        for name in ("stream_idle_seconds", "stall_seconds", "receive_seconds", "min_client_ping_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_named(name)} must be positive, got {getattr(self, name)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("--tls-cert and --tls-key come together: give both for TLS, or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError("--tls-client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(
                f"{_named('log_level')} must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _named(field: str) -> str:
    """A setting as the user gave it: its flag and its variable."""
    return f"{flag_of(Settings, field)} ({ENV_PREFIX}{field.upper()})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; each defaults to its LSTMSERVE_* variable, then the built-in default."""
    add_flags(parser, Settings, env_prefix=ENV_PREFIX)


def from_arguments(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    settings: Settings = from_args(
        Settings, args, env_prefix=ENV_PREFIX, environ=environ, error=SettingsError
    )
    return settings


def settings_table() -> str:
    """The settings as docs/serving.md's markdown table: flag, variable, default, what it does."""
    return markdown_table(Settings, ENV_PREFIX)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m lstmserve.server.settings --markdown")
    print(settings_table(), end="")
