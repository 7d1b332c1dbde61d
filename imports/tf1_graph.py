"""A TF1 checkpoint's .meta graph, read for what the checkpoint does not hold: the forget bias the cells
add at run time, any op a plain LSTM cell lacks (cell_clip's Minimum/Maximum, a relu activation), and
cell variables the graph has but the checkpoint lost. Parsed as a MetaGraphDef: nothing of it runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ImportRefused
from .settings import ImportSettings

# A cell's kernel: PARENT/basic_lstm_cell/kernel, PARENT/lstm_cell/kernel (weights before TF 1.3).
CELL = re.compile(r"^(?P<parent>.+?)/(?P<cell>basic_lstm_cell|lstm_cell)/(?P<kind>kernel|weights)$")

# Ops a BasicLSTMCell or LSTMCell without peepholes, projection or clipping builds in its scope.
_PLAIN_OPS = {
    *("Add", "AddV2", "BiasAdd", "ConcatV2", "Const", "Identity", "MatMul", "Mul", "Sigmoid", "Split", "Sub"),
    *("Tanh", "Fill", "Shape", "ZerosLike"),  # the gates, and the zero state
    *("ReadVariableOp", "VarHandleOp", "AssignVariableOp", "VarIsInitializedOp", "VariableV2", "Assign"),
    *("Enter", "Switch", "Merge", "Exit"),  # TF1's own while loops
}


_OPTIMIZERS = ("Adam", "Momentum", "RMSProp", "Adagrad", "Adadelta", "Ftrl", "GradientDescent", "save")


_OP_REASONS = {
    "Minimum": "clips its cell state (cell_clip)",
    "Maximum": "clips its cell state (cell_clip)",
    "ClipByValue": "clips its cell state (cell_clip)",
}


def read_graph(path: Path, prefix: str, cells, shapes, settings: ImportSettings) -> tuple[float, str]:
    """The forget bias the cells' graph adds (from .meta, else --forget-bias, else 1.0); refuses ops a
    plain LSTM lacks, and cell variables the graph has but the checkpoint lacks."""
    meta = Path(prefix + ".meta")
    given = settings.forget_bias
    if not meta.is_file():
        value = 1.0 if given is None else given
        return value, (
            f"no {meta.name}: forget_bias {value:g} from "
            f"{'--forget-bias' if given is not None else 'the default'}; cell_clip and activation not checked"
        )
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import meta_graph_pb2

    graph = meta_graph_pb2.MetaGraphDef()
    try:
        graph.ParseFromString(meta.read_bytes())
    except DecodeError:
        raise ImportRefused(
            f"{path}: {meta.name} is not a MetaGraphDef (damaged?): move it away and pass --forget-bias"
        ) from None
    # The forward pass only: a training graph also holds the gradients ("gradients/..." nodes, "*_grad"
    # while-loop bodies) and the optimizer's updates, whose ops a plain cell's forward pass lacks.
    nodes = [
        n for n in graph.graph_def.node if not n.name.split("/")[0].startswith(("gradients", *_OPTIMIZERS))
    ]
    nodes += [
        n for f in graph.graph_def.library.function if "_grad" not in f.signature.name for n in f.node_def
    ]
    group = re.sub(r"/cell_\d+$", "", cells[0][0])
    for node in graph.graph_def.node:
        match = CELL.match(node.name)
        if node.op in ("VarHandleOp", "VariableV2") and match and node.name not in shapes:
            if re.sub(r"/cell_\d+$", "", match["parent"]) == group:
                raise ImportRefused(
                    f"{path}: the graph has {node.name}, the checkpoint does not (missing variables)"
                )
    found_bias = set()
    for parent, cell in cells:
        # A while loop's body names its nodes from inside the loop ("lstm_cell/add/y"); the graph's
        # own nodes carry the whole scope ("rnn/multi_rnn_cell/cell_0/basic_lstm_cell/...").
        numbered = re.search(r"(^|/)(cell_\d+)$", parent)
        scope = re.compile(rf"(^|/){numbered.group(2) + '/' if numbered else ''}{cell}/")
        for node in nodes:
            if not scope.search(node.name) or "/Initializer/" in node.name:
                continue
            if node.op not in _PLAIN_OPS:
                reason = _OP_REASONS.get(node.op, f"uses a {node.op} op (a non-default activation?)")
                raise ImportRefused(f"{path}: {parent}/{cell} {reason}: only plain LSTM cells are served")
            values = node.attr["value"].tensor.float_val if node.op == "Const" else []
            if len(values) == 1 and re.search(r"/(Const_1|add/y)$", node.name):
                found_bias.add(round(float(values[0]), 6))
    if len(found_bias) != 1:  # every BasicLSTMCell and LSTMCell adds one, 0.0 included
        if given is None:
            raise ImportRefused(
                f"{path}: the forget bias the cells add was not found in {meta.name} "
                f"({len(found_bias)} candidates): pass --forget-bias"
            )
        return given, f"{meta.name} read: plain LSTM ops; forget_bias {given:g} from --forget-bias"
    value = found_bias.pop()
    if given is not None and abs(given - value) > 1e-6:
        raise ImportRefused(f"{path}: --forget-bias {given:g}, but the graph in {meta.name} adds {value:g}")
    return value, f"{meta.name} read: plain LSTM ops only; forget_bias {value:g} from the graph"
