"""`lstmserve import`: a TF1 checkpoint, Keras file or PyTorch state_dict -> a checked lstmserve
checkpoint, or straight into a model repository."""

from __future__ import annotations

import argparse
import sys

from lstmserve.config import add_flags, from_args

from .settings import ImportSettings


def add_import(commands) -> None:
    parser = commands.add_parser(
        "import",
        help="import an LSTM from TF1, Keras or PyTorch",
        description="Read an LSTM stack trained elsewhere (TF1 Saver checkpoint, Keras .keras/.h5, PyTorch "
        "nn.LSTM state_dict), check it against that framework's own forward pass, and write an lstmserve "
        "checkpoint (--out) or export it into a model repository (--name), or both.",
    )
    parser.add_argument("source", help="model.ckpt (TF1 prefix), model.keras, model.h5 or model.pt")
    parser.add_argument("--out", help="lstmserve checkpoint to write, for `lstmserve export`")
    parser.add_argument("--name", help="export straight into the repository under this model name")
    parser.add_argument(
        "--repository", default="models", help="model repository folder (default %(default)s)"
    )
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint or version")
    add_flags(parser, ImportSettings)
    parser.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    from .errors import ImportRefused
    from .run import import_model

    if not args.out and not args.name:
        raise ImportRefused(
            "say where it goes: --out CHECKPOINT.pt, --name NAME (into --repository), or both"
        )
    settings: ImportSettings = from_args(ImportSettings, args)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    result = import_model(
        args.source, settings, args.out, args.name, args.repository, args.version, args.force, log
    )
    if result.published is not None:
        print(
            f"{args.name} version {result.published.version}: {result.published.path} "
            f"(fingerprint {result.published.fingerprint})"
        )
    if args.out:
        print(f"wrote {args.out}")
    return 0
