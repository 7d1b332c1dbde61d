"""The benchmark's and the soak's options, declared once for run_bench/run_soak and `lstmserve bench`.

Plain dataclasses, so `lstmserve --help` imports no grpc. The bench's flags are BenchOptions' fields
(and --soak, SoakOptions.minutes); the soak reads some of them with its own defaults (see the CLI).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from lstmserve.config import flag_of, setting
from lstmserve.errors import LstmServeError
from lstmserve.layout import DEFAULT_REPOSITORY


class OptionsError(LstmServeError, ValueError):
    """A benchmark or soak option that cannot work."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = setting(
        MISSING,
        "soak the first of --models on --default-repository (or --repository) for MINUTES; "
        "writes soak.json; exits 1 on any error or mismatch",
        flag="--soak",
        metavar="MINUTES",
    )
    repository: str = DEFAULT_REPOSITORY
    """Repository the server serves."""
    model: str = "digits"
    """NAME or NAME:VERSION (the newest when none); its file is the reference."""
    streams: int = 32
    """Concurrent streams, each cycling through unary, bidi and KServe sequences."""
    server_args: tuple[str, ...] = ()
    """Extra `lstmserve serve` flags. With --workers, RSS is the supervising process's only."""
    hostile: bool = setting(
        False,
        "with --soak: attacks beside the checked streams, in turns (a process burning a core, a storm of "
        "short deadlines, calls that never send, streams that never read, random bytes), and the streams' "
        "calls/s, errors and the server's RSS during each",
    )
    phase_seconds: float = setting(30.0, "with --hostile: how long each attack (and each quiet spell) lasts")
    seed: int = 0
    sample_seconds: float = 2.0
    """Seconds between RSS samples (shorter for short soaks, so they still have a trend)."""
    progress_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.minutes > 0:  # NaN too
            raise OptionsError(f"{flag_of(self, 'minutes')} must be positive, got {self.minutes}")
        if self.streams < 1:
            raise OptionsError(f"--streams must be positive, got {self.streams}")
        if not self.phase_seconds >= 1:
            raise OptionsError(
                f"{flag_of(self, 'phase_seconds')} must be at least 1, got {self.phase_seconds}"
            )


@dataclass(frozen=True)
class BenchOptions:
    repository: str = setting("bench-models", "models to benchmark (default %(default)s: make bench-models)")
    models: tuple[str, ...] = setting(("digits", "lstm2x128"), "NAME or NAME:VERSION (default %(default)s)")
    default_repository: str = setting(
        DEFAULT_REPOSITORY, "for start-up time and memory, and the soak's (default %(default)s)"
    )
    many: int = setting(
        64, f"the 'many streams' count (default %(default)s; soak {SoakOptions.streams})", flag="--streams"
    )
    sweep: tuple[int, ...] = setting(
        (1, 4, 16, 64, 256), "stream counts of the first model's one-step sweep, with 1, --streams and 4x it"
    )
    chunks: tuple[int, ...] = setting((1, 28), "steps per call")
    seconds: float = setting(3.0, "measured seconds per scenario")
    warmup: float = 0.5
    """Seconds of load before each scenario's measurement."""
    server_args: tuple[str, ...] = setting(
        (),
        "extra flag for the batched (or soaked) server, e.g. --server-arg=--workers=2",
        flag="--server-arg",
        repeat=True,
    )
    connections: int = setting(1, "client connections to spread streams over")
    tls_ca: str = setting(
        "",
        "speak TLS to the lstmserve servers, trusting this PEM CA (give them --tls-cert and --tls-key "
        "with --server-arg, which both lstmserve servers then get)",
    )
    tls_cert: str = setting("", "PEM client certificate, for servers given --tls-client-ca (mTLS)")
    tls_key: str = setting("", "PEM private key of --tls-cert")
    token_file: str = setting("", "file holding the bearer token for servers given --auth-tokens")

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_cert and not self.tls_ca):
            raise OptionsError("--tls-cert and --tls-key come together, with --tls-ca")
        for name in ("many", "connections"):
            if getattr(self, name) < 1:
                raise OptionsError(f"{flag_of(self, name)} must be positive, got {getattr(self, name)}")
        for name in ("sweep", "chunks"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise OptionsError(f"{flag_of(self, name)} must be positive, got {list(getattr(self, name))}")
        if not self.seconds > 0:
            raise OptionsError(f"{flag_of(self, 'seconds')} must be positive, got {self.seconds}")
