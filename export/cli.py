"""`lstmserve export`: checkpoint -> verified ONNX in a model repository."""

from __future__ import annotations

import argparse
import sys

from lstmserve.contract import QUANTIZATIONS
from lstmserve.layout import DEFAULT_REPOSITORY


def add_export(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX in a model repository",
        description="Export a checkpoint to REPOSITORY/NAME/VERSION/model.onnx, verified against "
        "PyTorch before it is written.",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by `lstmserve train`")
    parser.add_argument(
        "--repository", default=DEFAULT_REPOSITORY, help="model repository folder (default %(default)s)"
    )
    parser.add_argument("--name", required=True, help="model name, e.g. digits")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS[1:],
        help="also write a dynamic-int8 copy as the next version; report accuracy and speed",
    )
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .publish import export_checkpoint

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    result = export_checkpoint(
        args.checkpoint, args.repository, args.name, args.version, args.force, args.quantize, log
    )
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
