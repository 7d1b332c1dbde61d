"""ImportSettings: how `lstmserve import` reads a model from another framework. No torch here:
`lstmserve --help` builds the flags from this class."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lstmserve.config import flag_of, setting

from .errors import ImportRefused

SOURCES = ("tf1", "keras", "torch")
HEADS = ("classify_last", "per_step")


@dataclass(frozen=True)
class ImportSettings:
    source_format: str | None = setting(
        None, "the source's framework (default: told from the file)", flag="--from", choices=SOURCES
    )
    head: str | None = setting(
        None,
        "tf1, torch: how the dense head is used, logits from the last step or from every step "
        "(Keras says it itself)",
        choices=HEADS,
    )
    scope: str | None = setting(
        None, "tf1: the variable scope above the cells (default: found, e.g. rnn/multi_rnn_cell)"
    )
    forget_bias: float | None = setting(
        None,
        "tf1: the cells' forget_bias, which TF adds at run time (default: read from the .meta graph, "
        "else BasicLSTMCell's 1.0); refused if the graph says otherwise",
    )
    head_kernel: str | None = setting(None, "tf1: the dense head's kernel variable, (hidden, outputs)")
    head_bias: str | None = setting(None, "tf1: the dense head's bias variable (default: none)")
    prefix: tuple[str, ...] = setting(
        (),
        "torch: the nn.LSTM's key prefix in the state_dict, e.g. encoder.lstm; several are chained in "
        "the order given (default: the one found, or an nn.ModuleList of them in index order)",
    )

    def __post_init__(self) -> None:
        if self.source_format is not None and self.source_format not in SOURCES:
            raise ImportRefused(
                f"unknown {flag_of(self, 'source_format')} {self.source_format!r}: "
                f"choose {', '.join(SOURCES)}"
            )
        if self.head is not None and self.head not in HEADS:
            raise ImportRefused(f"unknown {flag_of(self, 'head')} {self.head!r}: choose {', '.join(HEADS)}")
        if self.forget_bias is not None and not math.isfinite(self.forget_bias):
            raise ImportRefused(
                f"{flag_of(self, 'forget_bias')} must be a finite number, got {self.forget_bias}"
            )
        if self.head_bias is not None and self.head_kernel is None:
            raise ImportRefused(f"{flag_of(self, 'head_bias')} needs {flag_of(self, 'head_kernel')}")
        if self.head_kernel is not None and self.head is None:
            raise ImportRefused(
                f"{flag_of(self, 'head_kernel')} needs {flag_of(self, 'head')} classify_last or per_step"
            )
