"""The benchmark's and the soak's options: plain dataclasses, so `lstmserve --help` imports no grpc."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchOptions:
    repository: str = "bench-models"
    """Repository holding the models to load (see `make bench-models`)."""
    models: tuple[str, ...] = ("digits", "lstm2x128")
    """NAME or NAME:VERSION, each benchmarked in full."""
    default_repository: str = "models"
    """The default model's repository: start-up time and memory are measured on it."""
    many: int = 64
    """The 'many streams' count of the targets."""
    sweep: tuple[int, ...] = (1, 4, 16, 64)
    """Stream counts for the plot (first model, one-step chunks)."""
    chunks: tuple[int, ...] = (1, 28)
    """Steps per call."""
    seconds: float = 3.0
    """Measured seconds per scenario (after a warm-up)."""
    warmup: float = 0.5
    server_args: tuple[str, ...] = ()
    """Extra `lstmserve serve` flags for the batching-on server (e.g. --workers 2)."""
    connections: int = 1
    """Client connections the streams are spread over (several are needed to reach several workers)."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    """How long the load runs."""
    repository: str = BenchOptions.default_repository
    """Repository the server serves."""
    model: str = "digits"
    """NAME or NAME:VERSION (the newest when none); its file is the reference."""
    streams: int = 32
    """Concurrent streams, each cycling through unary, bidi and KServe sequences."""
    server_args: tuple[str, ...] = ()
    """Extra `lstmserve serve` flags. With --workers, RSS is the supervising process's only."""
    seed: int = 0
    sample_seconds: float = 2.0
    """Seconds between RSS samples (shorter for short soaks, so they still have a trend)."""
    progress_seconds: float = 10.0
