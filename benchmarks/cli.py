"""`lstmserve bench`: a thin layer over run_bench and report."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

from lstmserve.config import add_flags, from_args
from lstmserve.errors import LstmServeError

from .options import BenchOptions, SoakOptions


def add_bench(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="benchmark lstmserve against its floors",
        description="Start lstmserve (batching on and off) and bare gRPC and HTTP echoes, load each with N "
        "streams that feed back their state (unary, bidi, KServe; for the first model also coalesced, bidi "
        "with sparse state and wide calls, over a sweep of stream counts, and REST in JSON and binary "
        "beside KServe, its answers checked against gRPC's), measure in-process onnxruntime, "
        "and report p50/p95/p99, "
        "calls/s, steps/s and the ratios against the floors, as a table, JSON and a PNG. With --soak, "
        "instead run N mixed streams against one server for MINUTES, check every answer against "
        "onnxruntime, count errors and follow the server's memory.",
    )
    add_flags(parser, SoakOptions)  # --soak MINUTES
    # Left out, --repository and --streams are None: the soak reads them with its own defaults.
    add_flags(parser, BenchOptions, unset=("repository", "many"))
    parser.add_argument(
        "--out", default="bench-results", help="folder for bench.json and bench.png, or soak.json"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (tests)")
    parser.set_defaults(run=run_bench_command)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench_command(args: argparse.Namespace) -> int:
    if args.minutes is not None:  # --soak
        return run_soak_command(args)
    options: BenchOptions = from_args(BenchOptions, args)  # checks every value before any work
    if importlib.util.find_spec("matplotlib") is None:  # the plot comes last: say so before the work
        raise LstmServeError("the benchmark plots with matplotlib: pip install 'lstmserve[bench]'")
    if args.quick:
        options = replace(options, many=4, sweep=(1, 4), chunks=(1, 3), seconds=0.3, warmup=0.1)
    from .report import table, verdict_table, verdicts, write
    from .run import run_bench

    results = run_bench(options, say)
    json_path, png_path = write(results, Path(args.out))
    print(table(results))
    print()
    print(verdict_table(verdicts(results)))
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def run_soak_command(args: argparse.Namespace) -> int:
    options = SoakOptions(
        minutes=args.minutes,
        repository=args.repository or args.default_repository,
        model=args.models[0],
        streams=SoakOptions.streams if args.many is None else args.many,  # --streams
        server_args=tuple(args.server_args),
        hostile=args.hostile,
        phase_seconds=args.phase_seconds,
    )
    from .soak import run_soak
    from .soak_report import summary, write

    results = run_soak(options, say)
    path = write(results, Path(args.out))
    print(summary(results))
    print(f"\nwrote {path}")
    return 0 if results["ok"] else 1
