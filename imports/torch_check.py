"""PyTorch's own forward pass for check.py: nn.LSTM modules (and the nn.Linear head) built from the
same state_dict, each row run alone over its own length; a row of length 0 keeps its state, as TF1's
dynamic_rnn does and as lstmserve serves it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstmserve import contract
from lstmserve.model.config import LSTMConfig

from .torch_group import LSTMGroup


def torch_reference(groups: list[LSTMGroup], config: LSTMConfig, head_weights):
    """nn.LSTM modules with these weights, run one row at a time over that row's own length."""
    modules = []
    for group in groups:
        first = group.layers[0]
        lstm = nn.LSTM(
            first.weight_ih.shape[1],
            first.hidden,
            num_layers=len(group.layers),
            bias=group.has_bias,
            batch_first=True,
        )
        lstm.load_state_dict(
            {k.removeprefix(group.prefix): torch.from_numpy(v) for k, v in group.tensors.items()}
        )
        modules.append(lstm.eval())
    linear = None
    if head_weights is not None:
        linear = nn.Linear(head_weights[0].shape[1], head_weights[0].shape[0])
        linear.load_state_dict(
            {"weight": torch.from_numpy(head_weights[0]), "bias": torch.from_numpy(head_weights[1])}
        )

    @torch.no_grad()
    def forward(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, lengths = torch.from_numpy(feed[contract.INPUT]), feed[contract.SEQUENCE_LENGTHS]
        batch, time = x.shape[:2]
        out = np.zeros((batch, time, config.hidden_sizes[-1]), np.float32)
        finals = {
            n: np.array(feed[n.replace("final_", "initial_")])
            for n in contract.output_names(config.num_layers, False)[1:]
        }
        for row in range(batch):
            length = int(lengths[row])
            if length == 0:
                continue  # TF1's dynamic_rnn: a row of length 0 keeps its state
            y, layer = x[row : row + 1, :length], 0
            for lstm in modules:
                n = lstm.num_layers
                h0 = torch.stack(
                    [torch.from_numpy(feed[contract.initial_h(layer + i)][row]) for i in range(n)]
                )
                c0 = torch.stack(
                    [torch.from_numpy(feed[contract.initial_c(layer + i)][row]) for i in range(n)]
                )
                y, (h, c) = lstm(y, (h0.unsqueeze(1), c0.unsqueeze(1)))
                for i in range(n):
                    finals[contract.final_c(layer + i)][row] = c[i, 0].numpy()
                    finals[contract.final_h(layer + i)][row] = h[i, 0].numpy()
                layer += n
            out[row, :length] = y[0].numpy()
        result = {contract.OUTPUT: out, **finals}
        if linear is not None:
            top_h = torch.from_numpy(finals[contract.final_h(config.num_layers - 1)])
            logits = linear(top_h) if config.head == "classify_last" else linear(torch.from_numpy(out))
            result[contract.LOGITS] = logits.numpy()
        return result

    return forward
