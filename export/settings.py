"""ExportSettings: where and how one checkpoint is published, declared once for `lstmserve export`
and export_checkpoint(). No torch or onnx here: `lstmserve --help` builds the flags from this class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lstmserve import layout
from lstmserve.config import flag_of, setting
from lstmserve.contract import QUANTIZATIONS

from .errors import ExportError


@dataclass(frozen=True)
class ExportSettings:
    name: str = setting(dataclasses.MISSING, "model name, e.g. digits", required=True)
    repository: str = setting(layout.DEFAULT_REPOSITORY, "model repository folder (default %(default)s)")
    version: int | None = setting(None, "version number (default: the next free one)")
    quantize: str | None = setting(
        None,
        "also write a dynamic-int8 copy as the next version; report accuracy and speed",
        choices=QUANTIZATIONS[1:],
    )
    accepts_state_from: tuple[str, ...] = setting(
        (),
        "also take states made by this model (an encoder's, for a decoder); its layers must match; "
        "repeat for several",
        flag="--accepts-state-from",
        metavar="MODEL",
        repeat=True,
    )

    def __post_init__(self) -> None:
        try:
            layout.check_name(self.name)
        except layout.LayoutError as exc:
            raise ExportError(str(exc)) from None
        for maker in self.accepts_state_from:
            try:
                layout.check_name(maker)
            except layout.LayoutError as exc:
                raise ExportError(f"{flag_of(self, 'accepts_state_from')}: {exc}") from None
            if maker == self.name:
                raise ExportError(
                    f"{flag_of(self, 'accepts_state_from')} {maker}: a model takes its own states"
                )
        if self.version is not None and layout.version_of(str(self.version)) is None:
            raise ExportError(
                f"{flag_of(self, 'version')} must be a positive integer of at most "
                f"{layout.VERSION_DIGITS} digits, got {self.version}"
            )
        if self.quantize is not None and self.quantize not in QUANTIZATIONS[1:]:
            raise ExportError(
                f"unknown quantization {self.quantize!r} for {flag_of(self, 'quantize')}: "
                f"choose {', '.join(QUANTIZATIONS[1:])}"
            )
