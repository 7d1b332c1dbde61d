"""LSTMStack: TensorFlow's MultiRNNCell of BasicLSTMCells under dynamic_rnn, in PyTorch.

    input (batch, time, input_size)
      │  dropout(input_keep_prob)   ┐
      ▼                             │ one nn.LSTM per layer, each with its own hidden size;
    layer 0 ── (c_0, h_0) final     │ (c, h) in, (c, h) out: LSTMStateTuple
      │  dropout(output_keep_prob)  ┘
      ▼ ... layer L-1 ── (c_{L-1}, h_{L-1})
    output (batch, time, hidden_sizes[-1])  ─► head: logits per step, or from h_{L-1} (classify_last)

With `lengths`, each row stops at its own length: outputs past it are zero and the final state is the
state at its last valid step; a row of length 0 keeps its initial state. That is what makes a ragged
batch of many streams give each stream exactly what it would get alone.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import LSTMConfig

# Per layer, bottom to top: (c, h), each (batch, hidden_sizes[l]).
State = list[tuple[Tensor, Tensor]]


class StackOutput(NamedTuple):
    output: Tensor  # (batch, time, hidden_sizes[-1]), zero past each row's length
    state: State  # final (c, h) per layer
    logits: Tensor | None  # (batch, num_outputs) or (batch, time, num_outputs); None without a head


class LSTMStack(nn.Module):
    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        sizes = (config.input_size, *config.hidden_sizes)
        self.layers = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(config.num_layers)
        )
        self.input_dropout = nn.Dropout(1.0 - config.input_keep_prob)
        self.output_dropout = nn.Dropout(1.0 - config.output_keep_prob)
        self.head = nn.Linear(config.hidden_sizes[-1], config.num_outputs) if config.head != "none" else None
        self._init_biases()

    def _init_biases(self):
        # BasicLSTMCell starts its biases at zero and adds forget_bias to the forget gate. A constant
        # added to a trained bias is the same function as a bias that starts at that constant, so we
        # fold it in once here and the exported graph needs nothing special. Gate order: i, f, g, o.
        with torch.no_grad():
            for lstm in self.layers:
                hidden = lstm.hidden_size
                lstm.bias_ih_l0.zero_()
                lstm.bias_hh_l0.zero_()
                lstm.bias_ih_l0[hidden : 2 * hidden] = self.config.forget_bias

    def zero_state(self, batch: int, device=None) -> State:
        """Every layer's (c, h) as zeros, as MultiRNNCell.zero_state."""
        return [
            (torch.zeros(batch, size, device=device), torch.zeros(batch, size, device=device))
            for size in self.config.hidden_sizes
        ]

    def forward(self, input: Tensor, state: State | None = None, lengths: Tensor | None = None):
        batch, time = self._check(input, state, lengths)
        if state is None:
            state = self.zero_state(batch, input.device)
        if lengths is not None and bool((lengths == time).all()):
            lengths = None  # every row is full: the plain kernel gives the same answer, faster
        x = input
        final: State = []
        for lstm, (c0, h0) in zip(self.layers, state):
            x, c, h = _run_layer(cast(nn.LSTM, lstm), self.input_dropout(x), c0, h0, lengths)
            x = self.output_dropout(x)
            final.append((c, h))
        return StackOutput(x, final, self._logits(x, final[-1][1], lengths))

    def _logits(self, output: Tensor, last_h: Tensor, lengths: Tensor | None) -> Tensor | None:
        if self.head is None:
            return None
        if self.config.head == "classify_last":
            return self.head(self.output_dropout(last_h))  # (batch, num_outputs)
        logits = self.head(output)  # (batch, time, num_outputs)
        if lengths is not None:
            logits = logits * step_mask(lengths, output.shape[1]).unsqueeze(-1)
        return logits

    def _check(self, input: Tensor, state: State | None, lengths: Tensor | None) -> tuple[int, int]:
        cfg = self.config
        if input.dim() != 3 or input.shape[2] != cfg.input_size:
            raise ValueError(f"input must be (batch, time, {cfg.input_size}), got {tuple(input.shape)}")
        batch, time = input.shape[0], input.shape[1]
        if state is not None:
            if len(state) != cfg.num_layers:
                raise ValueError(f"state has {len(state)} layers, the model has {cfg.num_layers}")
            for layer, ((c, h), size) in enumerate(zip(state, cfg.hidden_sizes)):
                for name, tensor in (("c", c), ("h", h)):
                    if tuple(tensor.shape) != (batch, size):
                        raise ValueError(
                            f"state {name} of layer {layer} must be ({batch}, {size}), "
                            f"got {tuple(tensor.shape)}"
                        )
        if lengths is not None:
            if tuple(lengths.shape) != (batch,):
                raise ValueError(f"lengths must be ({batch},), got {tuple(lengths.shape)}")
            if bool(((lengths < 0) | (lengths > time)).any()):
                raise ValueError(f"lengths must be in [0, {time}], got {lengths.tolist()}")
        return batch, time


def step_mask(lengths: Tensor, time: int) -> Tensor:
    """(batch, time) float mask: 1 where a step is inside its row's length."""
    steps = torch.arange(time, device=lengths.device)
    return (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float32)


def _run_layer(lstm: nn.LSTM, x: Tensor, c0: Tensor, h0: Tensor, lengths: Tensor | None):
    """One layer over (batch, time, features) -> output, final c, final h."""
    if lengths is None:
        y, (h, c) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
        return y, c[0], h[0]
    batch, time = x.shape[:2]
    y = x.new_zeros(batch, time, lstm.hidden_size)
    c, h = c0, h0
    # pack_padded_sequence refuses rows of length 0: run the others and let those keep their state.
    rows = (lengths > 0).nonzero().squeeze(1)
    if rows.numel():
        packed = pack_padded_sequence(x[rows], lengths[rows].cpu(), batch_first=True, enforce_sorted=False)
        hx = (h0[rows].unsqueeze(0).contiguous(), c0[rows].unsqueeze(0).contiguous())
        out, (h_rows, c_rows) = lstm(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=time)
        y = y.index_copy(0, rows, out)
        c = c.index_copy(0, rows, c_rows[0])
        h = h.index_copy(0, rows, h_rows[0])
    return y, c, h
