"""Build the benchmark's repository: the default digits model and a 2x128 stack of 28 inputs, each
in fp32 (version 1) and dynamic int8 (version 2). Needs the [train] extra (torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def make_models(repository: Path, digits_checkpoint: Path) -> None:
    import torch

    from lstmserve.export.publish import export_checkpoint
    from lstmserve.model.checkpoint import Checkpoint, save_checkpoint
    from lstmserve.model.config import LSTMConfig
    from lstmserve.model.stack import LSTMStack

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    export_checkpoint(
        digits_checkpoint, repository, "digits", version=1, force=True, quantize="int8", log=log
    )
    # The MNIST row-by-row shape: weights untrained, which changes nothing about speed.
    torch.manual_seed(0)
    config = LSTMConfig(input_size=28, hidden_sizes=(128, 128), head="classify_last", num_outputs=10)
    checkpoint = repository / "lstm2x128.pt"
    save_checkpoint(checkpoint, Checkpoint(LSTMStack(config).eval()))
    export_checkpoint(checkpoint, repository, "lstm2x128", version=1, force=True, quantize="int8", log=log)
    checkpoint.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--digits-checkpoint", type=Path, default=Path("checkpoints/digits.pt"))
    args = parser.parse_args()
    make_models(args.repository, args.digits_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
