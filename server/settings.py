"""Settings: one object, read from flags, then LSTMSERVE_* environment variables, then defaults.

Each field is declared once, with lstmserve.config.setting: its flag, variable, --help line, row in
docs/serving.md's table (`python -m lstmserve.server.settings --markdown` prints it) and its own bounds
all come from it; __post_init__ adds only the checks that span several fields.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from lstmserve.config import add_flags, check_bounds, flag_of, from_args, markdown_table, setting
from lstmserve.errors import LstmServeError
from lstmserve.layout import DEFAULT_REPOSITORY
from lstmserve.limits import DEFAULT_LIMITS

ENV_PREFIX = "LSTMSERVE_"
# Not a setting: a connection (gRPC's or HTTP's) that has not finished its handshake (TLS, HTTP/2's
# preface) within this long is closed; gRPC's default (120 s) let stalled sockets pile up.
HANDSHAKE_SECONDS = 10


class SettingsError(LstmServeError, ValueError):
    """A flag or environment variable with a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "address to bind; 0.0.0.0 to listen on every interface")
    port: int = setting(50051, "port to bind; 0 picks a free one (logged at start)", minimum=0, maximum=65535)
    http_port: int = setting(
        8080,
        "port for HTTP/REST (Open Inference Protocol, binary tensors, streamed generation); 0 picks a "
        "free one; -1 turns HTTP off",
        minimum=-1,
        maximum=65535,
    )
    repository: str = setting(DEFAULT_REPOSITORY, "model repository: NAME/VERSION/model.onnx")
    model_name: str = setting(
        "",
        "serve --repository as this one model: VERSION/model.onnx, or a bare model.onnx (version 1)",
        metavar="NAME",
    )
    device: str = setting(
        "cpu", "cpu, or cuda (falls back to cpu with a warning where absent)", choices=("cpu", "cuda")
    )
    cuda_device_id: int = setting(0, "with --device cuda: the GPU to run on", minimum=0)
    cuda_mem_limit_mb: int = setting(
        0, "with --device cuda: most GPU memory onnxruntime's arena may take; 0: no limit", minimum=0
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
    intra_op_threads: int = setting(1, "onnxruntime threads per call (1 suits streaming chunks)", minimum=1)
    inference_threads: int = setting(
        0, "threads for runs too long for the event loop; 0 = one per core", minimum=0
    )
    max_batch_rows: int = setting(64, "rows merged into one onnxruntime run; 0 turns batching off", minimum=0)
    max_delay_ms: float = setting(
        2.0,
        "longest a batch gathers calls; it stops sooner once 0.3 ms pass with no call joining",
        minimum=0,
    )
    max_queue_rows: int = setting(1024, "rows waiting per model version before RESOURCE_EXHAUSTED")
    max_inline_steps: int = setting(
        256, "runs of up to rows x steps this size stay on the event loop thread", minimum=0
    )
    max_message_bytes: int = setting(
        DEFAULT_LIMITS.max_message_bytes, "largest request or response message", minimum=1
    )
    max_request_rows: int = setting(DEFAULT_LIMITS.max_request_rows, "rows (batch) in one request", minimum=1)
    max_request_steps: int = setting(
        DEFAULT_LIMITS.max_request_steps, "time steps in one request's chunk", minimum=1
    )
    max_request_row_steps: int = setting(
        DEFAULT_LIMITS.max_request_row_steps,
        "rows x steps in one request, and in one merged onnxruntime run (bounds its memory)",
        minimum=1,
    )
    max_inflight_bytes: int = setting(
        128 * 1024 * 1024, "request, response and stream-state bytes held by all calls at once"
    )
    max_generate_steps: int = setting(
        DEFAULT_LIMITS.max_generate_steps, "most steps one Generate call may ask for", minimum=1
    )
    max_calls: int = setting(1024, "unary calls in flight at once; past it, RESOURCE_EXHAUSTED", minimum=1)
    max_streams: int = setting(
        64, "open StreamInfer and Generate calls; past it, RESOURCE_EXHAUSTED", minimum=1
    )
    receive_seconds: float = setting(
        10.0, "how long a unary call may take to send its request; past it, DEADLINE_EXCEEDED", above=0
    )
    stream_idle_seconds: float = setting(
        60.0, "a stream that neither sends nor reads for this long ends with UNAVAILABLE", above=0
    )
    stall_seconds: float = setting(
        30.0, "a model whose waiting work makes no progress this long turns health NOT_SERVING", above=0
    )
    grace_seconds: float = setting(10.0, "on SIGTERM/SIGINT, how long calls in flight may finish", minimum=0)
    max_connection_age_seconds: float = setting(
        300.0,
        "a connection this old is told to go (GOAWAY) and reconnects, maybe elsewhere; 0: never",
        minimum=0,
    )
    max_connection_age_grace_seconds: float = setting(
        30.0, "how long calls on an aged-out connection may go on before it closes", minimum=0
    )
    keepalive_seconds: float = setting(
        60.0, "ping a connection idle this long; one that does not answer within 20 s is closed", minimum=0
    )
    min_client_ping_seconds: float = setting(
        10.0,
        "clients may ping this often, idle or not; more often and the server closes the connection",
        above=0,
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
        0.0, "with --state-key-file, refuse sealed states older than this; 0: any age", minimum=0
    )
    http_max_connections: int = setting(
        1024, "HTTP connections open at once; past it, a new one is closed at once", minimum=1
    )
    http_idle_seconds: float = setting(
        30.0, "an HTTP connection idle this long between requests is closed", above=0
    )
    http_console: bool = setting(True, "serve the browser console at / on the HTTP port (docs/console.md)")
    http_cors_origin: str = setting(
        "",
        "the one other origin (scheme://host[:port], as browsers send it) whose pages may call the HTTP "
        "port; empty: none",
        metavar="ORIGIN",
    )
    health_port: int = setting(
        0,
        "a plaintext port serving only grpc.health.v1, for probes when --tls-cert is set; 0: off",
        minimum=0,
        maximum=65535,
    )
    metrics_port: int = setting(
        0, "Prometheus metrics over HTTP on this port; 0: off", minimum=0, maximum=65535
    )
    poll_interval: float = setting(
        5.0, "seconds between rescans of the repository (0: only on SIGHUP)", minimum=0
    )
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    workers: int = setting(
        1, "server processes sharing the port (SO_REUSEPORT); one per core on big machines", minimum=1
    )

    def __post_init__(self) -> None:
        check_bounds(self, SettingsError, _named)  # each field's own: setting(minimum=..., choices=...)
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
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("--tls-cert and --tls-key come together: give both for TLS, or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError("--tls-client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):  # any case: not choices=
            raise SettingsError(
                f"{_named('log_level')} must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )

        if self.http_cors_origin and not _is_origin(self.http_cors_origin):
            # Compared byte for byte with each request's Origin: one no browser sends grants nothing.
            raise SettingsError(
                f"{_named('http_cors_origin')} must be an origin as browsers send it (no path, no "
                f"default port), e.g. https://app.example.com or http://localhost:3000; got "
                f"{self.http_cors_origin!r}"
            )
        if self.http_port > 0 and self.http_port in (self.port, self.health_port, self.metrics_port):
            raise SettingsError(f"{_named('http_port')} ({self.http_port}) is taken by another port setting")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_ORIGIN = re.compile(r"(https?)://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::([1-9][0-9]{0,4}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _is_origin(value: str) -> bool:
    """As a browser writes Origin: scheme, host and port, in lower case, the port left out where it is
    the scheme's default."""
    match = _ORIGIN.fullmatch(value)
    if match is None:
        return False
    scheme, _, port = match.groups()
    return port is None or (int(port) <= 65535 and port != _DEFAULT_PORTS[scheme])


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
