"""`lstmserve bench`: a thin layer over run_bench and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_bench(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="benchmark lstmserve against its floors",
        description="Start lstmserve (batching on and off) and a bare gRPC echo, load each with N streams "
        "that feed back their state, measure in-process onnxruntime, and report p50/p95/p99, "
        "calls/s, steps/s and the ratios against the floors, as a table, JSON and a PNG.",
    )
    parser.add_argument(
        "--repository", default="bench-models", help="models to benchmark (make bench-models)"
    )
    parser.add_argument("--models", nargs="+", default=["digits", "lstm2x128"], help="NAME or NAME:VERSION")
    parser.add_argument("--default-repository", default="models", help="for start-up time and memory")
    parser.add_argument("--streams", type=int, default=64, help="the 'many streams' count (default 64)")
    parser.add_argument("--sweep", type=int, nargs="+", default=[1, 4, 16, 64], help="stream counts to plot")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 28], help="steps per call")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for the batched server, e.g. --server-arg=--workers=2",
    )
    parser.add_argument(
        "--connections", type=int, default=1, help="client connections to spread streams over"
    )
    parser.add_argument("--out", default="bench-results", help="folder for bench.json and bench.png")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (tests)")
    parser.set_defaults(run=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from .report import table, verdict_table, verdicts, write
    from .run import BenchOptions, run_bench

    options = BenchOptions(
        repository=args.repository,
        models=tuple(args.models),
        default_repository=args.default_repository,
        many=args.streams,
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

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = run_bench(options, say)
    json_path, png_path = write(results, Path(args.out))
    print(table(results))
    print()
    print(verdict_table(verdicts(results)))
    print(f"\nwrote {json_path} and {png_path}")
    return 0
