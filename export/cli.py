"""`lstmserve export`: checkpoint -> verified ONNX in a model repository."""

from __future__ import annotations

import argparse
import sys

from lstmserve.config import add_flags, from_args

from .settings import ExportSettings


def add_export(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX in a model repository",
        description="Export a checkpoint to REPOSITORY/NAME/VERSION/model.onnx, verified against "
        "PyTorch before it is written.",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by `lstmserve train`")
    add_flags(parser, ExportSettings, ("repository",))
    add_flags(parser, ExportSettings, ("name", "version"))
    # What to do with a version already there: not a setting of the model published.
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    add_flags(parser, ExportSettings, ("quantize", "accepts_state_from"))
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .publish import publish

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    result = publish(args.checkpoint, from_args(ExportSettings, args), args.force, log)
    print(
        f"{args.name} version {result.model.version}: {result.model.path} "
        f"(fingerprint {result.model.fingerprint})"
    )
    if result.int8 is not None and result.int8_report is not None:
        print(
            f"{args.name} version {result.int8.version} (int8): {result.int8.path} "
            f"(fingerprint {result.int8.fingerprint})"
        )
        print(result.int8_report.summary())
    return 0
