"""`lstmserve bench`: a thin layer over run_bench and report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .options import BenchOptions, SoakOptions


def add_bench(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="benchmark lstmserve against its floors",
        description="Start lstmserve (batching on and off) and a bare gRPC echo, load each with N streams "
        "that feed back their state, measure in-process onnxruntime, and report p50/p95/p99, "
        "calls/s, steps/s and the ratios against the floors, as a table, JSON and a PNG. With --soak, "
        "instead run N mixed streams against one server for MINUTES, check every answer against "
        "onnxruntime, count errors and follow the server's memory.",
    )
    parser.add_argument(
        "--soak",
        type=_positive(float),
        metavar="MINUTES",
        help="soak the first of --models on --default-repository (or --repository) for MINUTES; "
        "writes soak.json; exits 1 on any error or mismatch",
    )
    parser.add_argument(
        "--repository",
        help=f"models to benchmark (default {BenchOptions.repository}: make bench-models)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["digits", "lstm2x128"],
        help="NAME or NAME:VERSION (default %(default)s)",
    )
    parser.add_argument(
        "--default-repository",
        default=BenchOptions.default_repository,
        help="for start-up time and memory, and the soak's (default %(default)s)",
    )
    parser.add_argument(
        "--streams",
        type=_positive(int),
        help=f"the 'many streams' count (default {BenchOptions.many}; soak {SoakOptions.streams})",
    )
    parser.add_argument("--sweep", type=int, nargs="+", default=[1, 4, 16, 64], help="stream counts to plot")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 28], help="steps per call")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for the batched (or soaked) server, e.g. --server-arg=--workers=2",
    )
    parser.add_argument(
        "--connections", type=int, default=1, help="client connections to spread streams over"
    )
    parser.add_argument(
        "--out", default="bench-results", help="folder for bench.json and bench.png, or soak.json"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (tests)")
    parser.set_defaults(run=run_bench_command)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return parse


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench_command(args: argparse.Namespace) -> int:
    if args.soak is not None:
        return run_soak_command(args)
    from .report import table, verdict_table, verdicts, write
    from .run import run_bench

    options = BenchOptions(
        repository=args.repository or BenchOptions.repository,
        models=tuple(args.models),
        default_repository=args.default_repository,
        many=BenchOptions.many if args.streams is None else args.streams,
        sweep=tuple(args.sweep),
        chunks=tuple(args.chunks),
        seconds=args.seconds,
        server_args=tuple(args.server_arg),
        connections=args.connections,
    )
    if args.quick:
        options = BenchOptions(
            **{
                **options.__dict__,
                "many": 4,
                "sweep": (1, 4),
                "chunks": (1, 3),
                "seconds": 0.3,
                "warmup": 0.1,
            }
        )

    results = run_bench(options, say)
    json_path, png_path = write(results, Path(args.out))
    print(table(results))
    print()
    print(verdict_table(verdicts(results)))
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def run_soak_command(args: argparse.Namespace) -> int:
    from .soak import run_soak
    from .soak_report import summary, write

    options = SoakOptions(
        minutes=args.soak,
        repository=args.repository or args.default_repository,
        model=args.models[0],
        streams=SoakOptions.streams if args.streams is None else args.streams,
        server_args=tuple(args.server_arg),
    )
    results = run_soak(options, say)
    path = write(results, Path(args.out))
    print(summary(results))
    print(f"\nwrote {path}")
    return 0 if results["ok"] else 1
