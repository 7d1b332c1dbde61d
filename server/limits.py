"""What one request may ask of the server, checked from shapes alone, before any array is made.

A request over a limit can never succeed as sent, so it gets INVALID_ARGUMENT with the limit's name
and what to send instead, and the setting's name as data (ServingError.limit, sent as trailing
metadata). The answer's size follows from the request's shape and the model, so a
request whose answer would not fit in one message is refused before it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmserve.limits import RequestLimits
from lstmserve.model.config import LSTMConfig

from .errors import InvalidArgument
from .request import Wanted
from .runtime import ModelRuntime
from .settings import Settings

_ENVELOPE_BYTES = 1024  # an answer's own fields and framing, the tensors' aside
_PER_TENSOR_BYTES = 128
_FLOAT = 4  # every output of the contract is float32


@dataclass(frozen=True)
class Limits(RequestLimits):
    """The server's request limits (the values GetModel sends, lstmserve/limits.py), and their checks."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls.read_from(settings)

    def check_chunk(self, rows: int, time: int) -> None:
        """A chunk of `rows` x `time` steps is within what one request may carry."""
        if rows > self.max_request_rows:
            raise InvalidArgument(
                f"input has {rows} rows; a request may carry at most {self.max_request_rows} "
                "(--max-request-rows): split the batch over several requests",
                limit="max_request_rows",
            )
        if time > self.max_request_steps:
            raise InvalidArgument(
                f"input has {time} steps; a request may carry at most {self.max_request_steps} "
                "(--max-request-steps): send the sequence in shorter chunks, feeding back the state",
                limit="max_request_steps",
            )
        if rows * time > self.max_request_row_steps:
            raise InvalidArgument(
                f"input has {rows} x {time} = {rows * time} row-steps; a request may carry at most "
                f"{self.max_request_row_steps} (--max-request-row-steps): send at most "
                f"{max(self.max_request_row_steps // rows, 1)} steps per chunk of {_rows(rows)}",
                limit="max_request_row_steps",
            )

    def check_answer(
        self, runtime: ModelRuntime, rows: int, time: int, wanted: Wanted, extra: int = 0
    ) -> int:
        """The answer's size in bytes, refused up front if it would not fit in one message.

        `extra`: bytes the answer echoes (a KServe id)."""
        config = runtime.info.config
        per_step, fixed = _sizes(config, rows, wanted)
        # What is not tensor data, counted high: the model's name and fingerprint, and per tensor its
        # name, datatype, shape and framing (a 151-layer model's answers came 32 kB under this).
        envelope = _ENVELOPE_BYTES + len(runtime.info.name.encode()) + len(runtime.info.fingerprint)
        envelope += _PER_TENSOR_BYTES * wanted.tensors + extra
        room = self.max_message_bytes - envelope
        size = per_step * time + fixed
        if size > room:
            fit = (room - fixed) // per_step if per_step else 0
            advice = f"send at most {fit} steps per chunk of {_rows(rows)}" if fit > 0 else "send fewer rows"
            if wanted.output and config.head != "none":
                advice += ", or ask only for the logits and the state (leave out the per-step output)"
            raise InvalidArgument(
                f"the answer would be {size + envelope} bytes, over the server's message "
                f"limit of {self.max_message_bytes} (--max-message-bytes): {advice}",
                limit="max_message_bytes",
            )
        return size


def _sizes(config: LSTMConfig, rows: int, wanted: Wanted) -> tuple[int, int]:
    """Bytes per time step, and bytes regardless of time, of the outputs asked for."""
    per_step = rows * config.hidden_sizes[-1] * _FLOAT if wanted.output else 0
    fixed = sum(rows * config.hidden_sizes[layer] * _FLOAT for layer, _ in wanted.state)
    if wanted.logits:
        if config.head == "per_step":
            per_step += rows * config.num_outputs * _FLOAT
        else:
            fixed += rows * config.num_outputs * _FLOAT
    return per_step, fixed


def _rows(rows: int) -> str:
    return "1 row" if rows == 1 else f"{rows} rows"
