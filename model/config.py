"""LSTMConfig: the one description of a stack's shape, saved in checkpoints and ONNX metadata."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

HEADS = ("none", "classify_last", "per_step")
LOSSES = ("cross_entropy", "mse")  # classes, or values (a regression head: per_step only)


@dataclass(frozen=True)
class LSTMConfig:
    input_size: int
    """Features per time step."""
    hidden_sizes: tuple[int, ...] = (128,)
    """One hidden size per layer, bottom to top (MultiRNNCell of BasicLSTMCells)."""
    input_keep_prob: float = 1.0
    """DropoutWrapper's input_keep_prob on each layer's input; training only."""
    output_keep_prob: float = 1.0
    """DropoutWrapper's output_keep_prob on each layer's output; training only."""
    forget_bias: float = 1.0
    """BasicLSTMCell's forget_bias: the forget gate starts biased open."""
    head: str = "none"
    """none (the stack's output), classify_last (logits from the top final h) or per_step."""
    num_outputs: int = 0
    """Logits per row (classify_last) or per step (per_step); 0 with head none."""
    labels: tuple[str, ...] = field(default_factory=tuple)
    """Optional names of the num_outputs classes, served with the model."""
    loss: str = "cross_entropy"
    """What the head was trained for: classes (cross_entropy) or values (mse, a regression)."""

    def __post_init__(self) -> None:
        # Lists from JSON or argparse become tuples, so configs compare and hash by value.
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if not _is_positive_int(self.input_size):
            raise ConfigError(f"input_size must be a positive integer, got {self.input_size!r}")
        if not self.hidden_sizes:
            raise ConfigError("hidden_sizes is empty: give one positive size per layer")
        bad = [size for size in self.hidden_sizes if not _is_positive_int(size)]
        if bad:
            raise ConfigError(f"hidden_sizes must be positive integers, got {list(self.hidden_sizes)}")
        for name in ("input_keep_prob", "output_keep_prob"):
            keep = getattr(self, name)
            if not 0.0 < keep <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {keep}")
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head == "none" and self.num_outputs != 0:
            raise ConfigError("num_outputs must be 0 when head is 'none'")
        if self.head != "none" and not _is_positive_int(self.num_outputs):
            raise ConfigError(f"head {self.head!r} needs num_outputs >= 1, got {self.num_outputs!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss == "mse" and self.head != "per_step":
            raise ConfigError(f"loss mse (a regression) needs head per_step, got {self.head!r}")
        if self.labels and len(self.labels) != self.num_outputs:
            raise ConfigError(f"{len(self.labels)} labels given for num_outputs={self.num_outputs}")

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        data["labels"] = list(self.labels)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown LSTMConfig fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"incomplete LSTMConfig: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> LSTMConfig:
        return cls.from_dict(json.loads(text))


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
