"""`lstmserve train`: parse flags into TrainSettings, train, write the checkpoint and metrics."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from .data import DATASETS


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train an LSTM stack on a data set",
        description="Train an LSTM stack and write a checkpoint and metrics JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--data-path", help="mnist: folder of IDX files; npz: the .npz file")
    parser.add_argument("--out", help="checkpoint to write (default: checkpoints/DATASET.pt)")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    parser.add_argument("--metrics", help="metrics JSON to write (default: beside the checkpoint)")
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=[128],
        metavar="N",
        help="hidden size of each layer, bottom to top",
    )
    parser.add_argument("--input-keep-prob", type=float, default=1.0, help="DropoutWrapper input keep")
    parser.add_argument("--output-keep-prob", type=float, default=0.9, help="DropoutWrapper output keep")
    parser.add_argument("--forget-bias", type=float, default=1.0, help="BasicLSTMCell forget bias")
    parser.add_argument("--epochs", type=int, default=60, help="most epochs (early stopping may end sooner)")
    parser.add_argument("--patience", type=int, default=8, help="epochs without a better validation loss")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--clip-norm", type=float, default=5.0, help="gradient norm clip")
    parser.add_argument("--bptt", type=int, default=32, help="truncated BPTT window for per-step tasks")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the weights and the order")
    parser.add_argument("--limit", type=int, help="use only the first N sequences")
    parser.add_argument("--quick", action="store_true", help="a few epochs on a few hundred sequences")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .train import TrainSettings, train, write_outputs

    for flag, value in (
        ("--epochs", args.epochs),
        ("--patience", args.patience),
        ("--batch-size", args.batch_size),
        ("--bptt", args.bptt),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    for flag, number in (("--lr", args.lr), ("--clip-norm", args.clip_norm)):
        if not number > 0:  # NaN too
            raise ConfigError(f"{flag} must be positive, got {number}")
    if args.limit is not None and args.limit < 3:
        raise ConfigError(f"--limit must be at least 3 (train, validation and test), got {args.limit}")
    out = Path(args.out or f"checkpoints/{args.dataset}.pt")
    if out.exists() and not args.force:  # before the training, not after it
        raise ConfigError(f"{out} already exists; pass --force to replace it, or choose another --out")
    settings = TrainSettings(
        dataset=args.dataset,
        data_path=args.data_path,
        hidden_sizes=tuple(args.hidden_sizes),
        input_keep_prob=args.input_keep_prob,
        output_keep_prob=args.output_keep_prob,
        forget_bias=args.forget_bias,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        clip_norm=args.clip_norm,
        max_epochs=args.epochs,
        patience=args.patience,
        bptt=args.bptt,
        seed=args.seed,
        limit=args.limit,
    )
    if args.quick:
        settings = replace(settings, max_epochs=min(settings.max_epochs, 3), limit=settings.limit or 300)
    result = train(settings, progress=not args.no_progress)
    metrics_path = Path(args.metrics) if args.metrics else out.with_suffix(".metrics.json")
    write_outputs(result, out, metrics_path)
    m = result.metrics
    print(
        f"test accuracy {100 * m['test_accuracy']:.2f}% on {m['sizes']['test']} held-out sequences "
        f"(loss {m['test_loss']:.4f}); {m['epochs_run']} epochs, best {m['best_epoch']}, "
        f"{m['train_seconds']:.1f} s",
        file=sys.stderr,
    )
    print(f"wrote {out} and {metrics_path}", file=sys.stderr)
    return 0
