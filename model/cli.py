"""`lstmserve train`: parse flags into TrainSettings, train, write the checkpoint and metrics."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from lstmserve.config import add_flags, flags, from_args

from .settings import TrainSettings

_FIRST = ("dataset", "data_path")  # shown before the output flags, the rest after them


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train an LSTM stack on a data set",
        description="Train an LSTM stack and write a checkpoint and metrics JSON.",
        formatter_class=_DefaultsShown,
    )
    add_flags(parser, TrainSettings, _FIRST)
    # Where the results go and how the run looks: not settings of the training itself.
    parser.add_argument("--out", help="checkpoint to write (default: checkpoints/DATASET.pt)")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    parser.add_argument("--metrics", help="metrics JSON to write (default: beside the checkpoint)")
    add_flags(parser, TrainSettings, [flag.name for flag in flags(TrainSettings) if flag.name not in _FIRST])
    parser.add_argument("--quick", action="store_true", help="a few epochs on a few hundred sequences")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .train import train, write_outputs

    settings: TrainSettings = from_args(TrainSettings, args)  # checks every value
    out = Path(args.out or f"checkpoints/{settings.dataset}.pt")
    if out.exists() and not args.force:  # before the training, not after it
        raise ConfigError(f"{out} already exists; pass --force to replace it, or choose another --out")
    if args.quick:
        settings = replace(settings, max_epochs=min(settings.max_epochs, 3), limit=settings.limit or 300)
    result = train(settings, progress=not args.no_progress)
    metrics_path = Path(args.metrics) if args.metrics else out.with_suffix(".metrics.json")
    write_outputs(result, out, metrics_path)
    m = result.metrics
    quality = (
        f"test accuracy {100 * m['test_accuracy']:.2f}%"
        if m["test_accuracy"] is not None
        else f"test mse {m['test_loss']:.5f} (next value = this value: {m['naive_test_mse']:.5f})"
    )
    print(
        f"{quality} on {m['sizes']['test']} held-out sequences "
        f"(loss {m['test_loss']:.4f}); {m['epochs_run']} epochs, best {m['best_epoch']}, "
        f"{m['train_seconds']:.1f} s",
        file=sys.stderr,
    )
    print(f"wrote {out} and {metrics_path}", file=sys.stderr)
    return 0


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, except None: those options' help says what leaving them out does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)
