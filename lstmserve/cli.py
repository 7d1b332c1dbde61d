"""`lstmserve` console script: one subcommand per stage, each a thin layer over a library function.

Each stage's parser lives beside its code; their modules import torch, onnxruntime or grpc only when
the command runs, so `lstmserve serve` works where torch is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lstmserve import __version__
from lstmserve.errors import LstmServeError


def build_parser() -> argparse.ArgumentParser:
    from lstmserve.export import cli as export_cli
    from lstmserve.model import cli as model_cli
    from lstmserve.server import cli as server_cli

    parser = argparse.ArgumentParser(prog="lstmserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lstmserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_cli.add_train(commands)
    export_cli.add_export(commands)
    server_cli.add_serve(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except LstmServeError as exc:
        print(f"lstmserve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
