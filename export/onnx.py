"""LSTMStack -> ONNX with the contract's names, state as explicit inputs and outputs, and metadata.

torch 2.13's default (dynamo) exporter folds the example's time length into a Reshape, so we use the
legacy TorchScript exporter, which gives one native LSTM node per layer with dynamic batch and time.
It cannot see `sequence_lengths` through nn.LSTM, so we wire that input into every LSTM node's
`sequence_lens` afterwards; onnxruntime then zeroes outputs past each row's length and returns the
state at the row's last valid step, exactly as LSTMStack does with `lengths`.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings

import onnx
import torch
from torch import nn

from lstmserve import __version__, contract
from lstmserve.model.stack import LSTMStack, step_mask

from .errors import ExportError

OPSET = 17
_LSTM_SEQUENCE_LENS = 4  # ONNX LSTM inputs: X, W, R, B, sequence_lens, initial_h, initial_c, P


class _ContractStack(nn.Module):
    """LSTMStack.forward with the contract's flat signature, for tracing (eval mode: no dropout)."""

    def __init__(self, stack: LSTMStack):
        super().__init__()
        self.stack = stack

    def forward(self, input, sequence_lengths, *initial_state):
        stack, outputs = self.stack, []
        started = (sequence_lengths > 0).unsqueeze(1)  # (batch, 1)
        x = input  # (batch, time, input_size)
        for layer, lstm in enumerate(stack.layers):
            c0, h0 = initial_state[2 * layer], initial_state[2 * layer + 1]  # (batch, hidden)
            x, (h, c) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
            # ORT's LSTM returns zeros as the final state of a 0-length row; the contract says such a
            # row keeps the state it came with.
            outputs += [torch.where(started, c[0], c0), torch.where(started, h[0], h0)]
        if stack.config.head == "classify_last":
            outputs.append(stack.head(outputs[-1]))  # (batch, num_outputs) from the top layer's h
        elif stack.config.head == "per_step":
            mask = step_mask(sequence_lengths, x.shape[1]).unsqueeze(-1)  # (batch, time, 1)
            outputs.append(stack.head(x) * mask)  # (batch, time, num_outputs)
        return (x, *outputs)


def export_model(stack: LSTMStack) -> onnx.ModelProto:
    """The contract's ONNX graph for a stack, with metadata and fingerprint."""
    config = stack.config
    stack = stack.eval()
    batch, time = 2, 3  # any sizes: both axes are dynamic (verify.py runs many, (1, 1) included)
    example = [torch.zeros(batch, time, config.input_size), torch.full((batch,), time, dtype=torch.int32)]
    for c, h in stack.zero_state(batch):
        example += [c, h]
    inputs = contract.input_names(config.num_layers)
    outputs = contract.output_names(config.num_layers, config.head != "none")
    dynamic_axes = {name: {0: "batch"} for name in inputs + outputs}
    for name in (contract.INPUT, contract.OUTPUT) + ((contract.LOGITS,) if config.head == "per_step" else ()):
        dynamic_axes[name] = {0: "batch", 1: "time"}

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and LSTM-batch_first notes
        torch.onnx.export(
            # The legacy exporter writes to any file object; its annotation only names paths.
            _ContractStack(stack),
            tuple(example),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
        )
    model = onnx.load_from_string(buffer.getvalue())
    _wire_sequence_lengths(model, config.num_layers)
    onnx.checker.check_model(model, full_check=True)
    set_metadata(
        model,
        {
            contract.META_CONFIG: config.to_json(),
            contract.META_HEAD: config.head,
            contract.META_LABELS: json.dumps(list(config.labels)),
            contract.META_VERSION: __version__,
            contract.META_QUANTIZATION: "none",
        },
    )
    return model


def _wire_sequence_lengths(model: onnx.ModelProto, num_layers: int) -> None:
    lstm_nodes = [node for node in model.graph.node if node.op_type == "LSTM"]
    if len(lstm_nodes) != num_layers:
        raise ExportError(f"expected {num_layers} LSTM nodes in the exported graph, found {len(lstm_nodes)}")
    for node in lstm_nodes:
        while len(node.input) <= _LSTM_SEQUENCE_LENS:
            node.input.append("")
        node.input[_LSTM_SEQUENCE_LENS] = contract.SEQUENCE_LENGTHS


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Set metadata_props and (re)compute the fingerprint over everything else in the file."""
    props = metadata(model)
    props.update(values)
    props.pop(contract.META_FINGERPRINT, None)
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])
    model.metadata_props.add(key=contract.META_FINGERPRINT, value=fingerprint(model))


def fingerprint(model: onnx.ModelProto) -> str:
    """A short hash of the model's bytes, leaving out the fingerprint entry itself."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [prop for prop in copy.metadata_props if prop.key != contract.META_FINGERPRINT]
    del copy.metadata_props[:]
    copy.metadata_props.extend(kept)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}
