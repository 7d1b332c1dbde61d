"""`lstmserve` console script: one subcommand per stage, each a thin layer over a library function.

Each stage's parser lives beside its code and imports torch, onnxruntime or grpc only when its command
runs, so `lstmserve serve` works where torch is not installed. A stage whose extra is not installed
still shows its commands, which then say what to install: a library missing when a command runs
ends in one line naming the extra that installs it (lstmserve/extras.py), not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lstmserve import __version__
from lstmserve.errors import LstmServeError
from lstmserve.extras import extra_for, install_hint

# (module, functions that add its subcommands, the extra it needs, its command names)
_STAGES = (
    ("lstmserve.model.cli", ("add_train",), "train", ("train",)),
    ("lstmserve.imports.cli", ("add_import",), "train", ("import",)),
    ("lstmserve.export.cli", ("add_export",), "train", ("export",)),
    ("lstmserve.server.cli", ("add_serve",), "serve", ("serve",)),
    ("lstmserve.client.cli", ("add_infer", "add_demo"), "client", ("infer", "demo")),
    ("lstmserve.client.generate_cli", ("add_generate",), "client", ("generate",)),
    ("lstmserve.benchmarks.cli", ("add_bench",), "bench", ("bench",)),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstmserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lstmserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name, adders, extra, names in _STAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            for name in names:
                _add_missing(commands, name, extra, exc)
            continue
        for adder in adders:
            getattr(module, adder)(commands)
    return parser


def _add_missing(commands, name: str, extra: str, exc: ImportError) -> None:
    def run(args: argparse.Namespace) -> int:
        raise _missing(exc, extra) or LstmServeError(install_hint(extra, exc))

    parser = commands.add_parser(name, help=f"(needs lstmserve[{extra}])", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def _missing(exc: ImportError, preferred: str) -> LstmServeError | None:
    """A library an extra installs, missing: which extra to install (None for anything else: a bug)."""
    name = getattr(exc, "name", None)
    extra = extra_for(name, preferred) if isinstance(exc, ModuleNotFoundError) and name else None
    return None if extra is None else LstmServeError(install_hint(extra, exc))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a reader gone shows here, where it is caught, not at the exit's flush
    except BrokenPipeError:
        # `lstmserve infer ... | head -1`: the reader has what it wanted, so stop quietly, as other
        # tools do; stdout points at devnull so that nothing left buffered raises it again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        try:
            return args.run(args) or 0
        except ModuleNotFoundError as exc:  # each command imports its libraries only when it runs
            stage_extra = next(extra for _, _, extra, names in _STAGES if args.command in names)
            hint = _missing(exc, stage_extra)
            if hint is None:
                raise  # not a library an extra installs: a bug, shown with its traceback
            raise hint from None
    except LstmServeError as exc:
        print(f"lstmserve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
