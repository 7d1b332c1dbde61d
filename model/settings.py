"""TrainSettings: what one training run is asked to do, declared once for train() and `lstmserve train`.

No torch here: `lstmserve --help` builds the train command's flags from this class.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmserve.config import flag_of, setting

from .data import DATASETS
from .errors import ConfigError


@dataclass(frozen=True)
class TrainSettings:
    dataset: str = setting("digits", f"one of {', '.join(DATASETS)}")
    data_path: str | None = setting(None, "mnist: folder of IDX files; npz: the .npz file")
    hidden_sizes: tuple[int, ...] = setting((128,), "hidden size of each layer, bottom to top", metavar="N")
    input_keep_prob: float = setting(1.0, "DropoutWrapper input keep")
    output_keep_prob: float = setting(0.9, "DropoutWrapper output keep")
    forget_bias: float = setting(1.0, "BasicLSTMCell forget bias")
    max_epochs: int = setting(60, "most epochs (early stopping may end sooner)", flag="--epochs")
    patience: int = setting(8, "epochs without a better validation loss")
    batch_size: int = setting(64, "sequences per optimizer step")
    learning_rate: float = setting(1e-2, "Adam learning rate", flag="--lr")
    clip_norm: float = setting(5.0, "gradient norm clip")
    bptt: int = setting(32, "truncated BPTT window for per-step tasks")
    seed: int = setting(0, "seeds the split, the weights and the order")
    val_fraction: float = 0.1
    """Share of sequences held out for early stopping."""
    test_fraction: float = 0.1
    """Share held out for the final test (unless the data set ships a test set)."""
    limit: int | None = setting(None, "use only the first N sequences")

    def __post_init__(self) -> None:
        # The messages name the flags: the CLI is where most of these values come from.
        for name in ("max_epochs", "patience", "batch_size", "bptt"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag_of(self, name)} must be at least 1, got {getattr(self, name)}")
        if not self.clip_norm > 0:  # NaN too
            raise ConfigError(f"{flag_of(self, 'clip_norm')} must be positive, got {self.clip_norm}")
        if not self.learning_rate >= 0:  # 0 keeps the weights as they start, as a test of the loop wants
            raise ConfigError(
                f"{flag_of(self, 'learning_rate')} must be positive, got {self.learning_rate} "
                "(or 0, to keep the weights as they start)"
            )
        if self.limit is not None and self.limit < 3:
            raise ConfigError(
                f"{flag_of(self, 'limit')} must be at least 3 (train, validation and test), got {self.limit}"
            )
