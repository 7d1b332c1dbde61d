"""TF1's own forward pass for check.py: dynamic_rnn with sequence_length over the same cells
(BasicLSTMCell or LSTMCell, in a MultiRNNCell or alone), holding the checkpoint's values."""

from __future__ import annotations

import re

import numpy as np

from lstmserve import contract
from lstmserve.model.config import LSTMConfig


def tf1_reference(tf, reader, names, cells, forget_bias: float, config: LSTMConfig, head):
    """TF1's dynamic_rnn over the same cells, with the checkpoint's values."""
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, None, config.input_size])
        lengths = tf1.placeholder(tf.int32, [None])
        cell_class = (
            tf1.nn.rnn_cell.BasicLSTMCell if cells[0][1] == "basic_lstm_cell" else tf1.nn.rnn_cell.LSTMCell
        )
        made = [cell_class(size, forget_bias=forget_bias) for size in config.hidden_sizes]
        multi = len(cells) > 1 or re.search(r"/cell_\d+$", cells[0][0]) is not None
        states = [
            tf1.nn.rnn_cell.LSTMStateTuple(
                tf1.placeholder(tf.float32, [None, n]), tf1.placeholder(tf.float32, [None, n])
            )
            for n in config.hidden_sizes
        ]
        cell = tf1.nn.rnn_cell.MultiRNNCell(made) if multi else made[0]
        initial = tuple(states) if multi else states[0]
        output, final = tf1.nn.dynamic_rnn(cell, x, sequence_length=lengths, initial_state=initial)
        final = list(final) if multi else [final]
        logits = None
        if head is not None:
            weight, bias = head
            source = final[-1].h if config.head == "classify_last" else output
            logits = tf.tensordot(source, tf.constant(weight.T), 1) + tf.constant(bias)
        variables = [v for v in tf1.global_variables()]
        session = tf1.Session(graph=graph)
        for (kernel_name, bias_name), (kernel_var, bias_var) in zip(
            names, zip(variables[0::2], variables[1::2])
        ):
            kernel_var.load(reader.get_tensor(kernel_name), session)
            bias_var.load(reader.get_tensor(bias_name), session)

    def forward(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {x: feed[contract.INPUT], lengths: feed[contract.SEQUENCE_LENGTHS]}
        for layer, state in enumerate(states):
            inputs[state.c], inputs[state.h] = (
                feed[contract.initial_c(layer)],
                feed[contract.initial_h(layer)],
            )
        fetches = {contract.OUTPUT: output}
        for layer, state in enumerate(final):
            fetches[contract.final_c(layer)], fetches[contract.final_h(layer)] = state.c, state.h
        if logits is not None:
            fetches[contract.LOGITS] = logits
        return session.run(fetches, inputs)

    return forward
