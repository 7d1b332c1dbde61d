"""TensorFlow 1: a Saver (V2) checkpoint of MultiRNNCell([BasicLSTMCell or LSTMCell ...]) under
dynamic_rnn, or a single such cell, plus an optional dense head given by variable names.

Read with TensorFlow's own checkpoint reader (the [tf] extra). TF's kernel is (input + H, 4H), rows
[x; h], gates (i, j, f, o); lstmserve's is (i, f, g, o) with j as g. `forget_bias` is not a variable:
TF adds it at run time, so it is folded into the f block of the bias. Where Saver's .meta file is
beside the checkpoint (it is by default), the cell's own graph is read: the forget bias it used, and
any op a plain LSTM does not have (cell_clip's Minimum/Maximum, a relu activation) is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from lstmserve.model.config import LSTMConfig

from .errors import ImportRefused
from .settings import ImportSettings
from .source import Imported, LayerWeights, check_chain, check_head, regate
from .tf1_check import tf1_reference
from .tf1_graph import CELL, read_graph

_TF_TO_TORCH = (0, 2, 1, 3)  # (i, j, f, o) -> (i, f, j, o)


_REFUSED = (  # variable-name marks of cells that do not map, and why
    (re.compile(r"/w_[ifo]_diag$"), "has peepholes (use_peepholes=True)"),
    (re.compile(r"/projection/kernel$"), "has a projection (num_proj)"),
    (re.compile(r"layer_norm|/gamma$"), "is a layer-norm cell"),
    (re.compile(r"gru_cell"), "is a GRU cell"),
    (re.compile(r"bidirectional_rnn|/fw/|/bw/"), "is bidirectional"),
)


def read_tf1(path: Path, settings: ImportSettings) -> Imported:
    tf = _tensorflow()
    prefix = _prefix(tf, path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # TF raises its own NotFoundError/DataLossError kinds
        raise ImportRefused(f"{path}: not a readable TF checkpoint ({type(exc).__name__})") from None
    shapes = reader.get_variable_to_shape_map()
    cells = _find_cells(path, shapes, settings.scope)
    layers, names = [], []
    for parent, cell_name in cells:
        kernel_name = next(
            f"{parent}/{cell_name}/{k}"
            for k in ("kernel", "weights")
            if f"{parent}/{cell_name}/{k}" in shapes
        )
        bias_name = next(
            (
                f"{parent}/{cell_name}/{k}"
                for k in ("bias", "biases")
                if f"{parent}/{cell_name}/{k}" in shapes
            ),
            None,
        )
        if bias_name is None:
            raise ImportRefused(f"{path}: {parent}/{cell_name} has a kernel but no bias variable")
        _check_cell_shapes(path, kernel_name, shapes[kernel_name], bias_name, shapes[bias_name])
        kernel = _tensor(path, reader, kernel_name)
        bias = _tensor(path, reader, bias_name)
        names.append((kernel_name, bias_name))
        layers.append((kernel, bias))
    forget_bias, graph_note = read_graph(path, prefix, cells, shapes, settings)
    weights = []
    input_size = layers[0][0].shape[0] - layers[0][0].shape[1] // 4
    for kernel, bias in layers:
        hidden = kernel.shape[1] // 4
        w = regate(kernel, _TF_TO_TORCH, axis=1)  # (in + H, 4H)
        b = regate(bias, _TF_TO_TORCH, axis=0).copy()
        b[hidden : 2 * hidden] += forget_bias
        split = kernel.shape[0] - hidden
        weights.append(LayerWeights(np.ascontiguousarray(w[:split].T), np.ascontiguousarray(w[split:].T), b))
    check_chain(weights, input_size, f"{path}")
    head = _head(path, reader, shapes, settings, weights[-1].hidden)
    config = LSTMConfig(
        input_size=int(input_size),
        hidden_sizes=tuple(int(w.hidden) for w in weights),
        forget_bias=float(forget_bias),
        head=settings.head if head is not None else "none",
        num_outputs=int(head[0].shape[0]) if head is not None else 0,
    )
    multi = len(cells) > 1 or re.search(r"/cell_\d+$", cells[0][0]) is not None
    source: dict[str, Any] = {
        "format": "tf1",
        "path": str(prefix),
        "variables": [n for pair in names for n in pair],
        "cell": cells[0][1],
        "forget_bias": forget_bias,
    }
    notes = [
        f"compared with TF {tf.__version__}'s dynamic_rnn over {'MultiRNNCell of ' if multi else ''}"
        f"{'BasicLSTMCell' if cells[0][1] == 'basic_lstm_cell' else 'LSTMCell'}(forget_bias={forget_bias:g}) "
        "with sequence_length and the checkpoint's values",
        graph_note,
    ]
    notes += _unused(shapes, names, settings, weights[-1].hidden)
    return Imported(
        config,
        weights,
        head,
        source,
        tf1_reference(tf, reader, names, cells, forget_bias, config, head),
        notes,
    )


def _check_cell_shapes(
    path: Path, kernel_name: str, kernel: list[int], bias_name: str, bias: list[int]
) -> None:
    """A cell's kernel is (input + H, 4H) with input >= 1, its bias (4H,): before regate() splits them."""
    if len(kernel) != 2 or kernel[1] == 0 or kernel[1] % 4 or kernel[0] <= kernel[1] // 4:
        raise ImportRefused(
            f"{path}: {kernel_name} is {tuple(kernel)}, an LSTM cell's kernel is (input + H, 4*H) "
            "with input and H >= 1"
        )
    if list(bias) != [kernel[1]]:
        raise ImportRefused(f"{path}: {bias_name} is {tuple(bias)}, the kernel needs ({kernel[1]},)")


def _tensor(path: Path, reader, name: str) -> np.ndarray:
    """One variable as float32; a missing, cut-off or damaged .data file is refused, naming it."""
    import tensorflow as tf

    try:
        value = reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ImportRefused(
            f"{path}: cannot read {name} from the checkpoint's data ({type(exc).__name__}: {first})"
        ) from None
    value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise ImportRefused(f"{path}: {name} holds {value.dtype} values, not numbers")
    return value.astype(np.float32)


def _tensorflow():
    # TF 2.16+ keeps the TF1 cells (BasicLSTMCell...) in tf_keras, which it uses only when told before import.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportRefused(
            "reading a TF1 checkpoint needs TensorFlow: pip install 'lstmserve[tf]'"
        ) from None
    try:
        tf.compat.v1.nn.rnn_cell.BasicLSTMCell  # noqa: B018 (raises where the TF1 cells are missing)
    except (AttributeError, ImportError):
        raise ImportRefused(
            "TensorFlow's TF1 cells need tf_keras and TF_USE_LEGACY_KERAS=1 set before "
            "TensorFlow is imported: pip install 'lstmserve[tf]'"
        ) from None
    return tf


def _prefix(tf, path: Path) -> str:
    if path.is_dir():
        try:
            found = tf.train.latest_checkpoint(str(path))
        except (
            UnicodeDecodeError,
            ValueError,
            tf.errors.OpError,
        ) as exc:  # text_format's ParseError is a ValueError
            raise ImportRefused(
                f"{path}: its 'checkpoint' file is not readable ({type(exc).__name__})"
            ) from None
        if found is None:
            raise ImportRefused(f"{path}: a folder without a TF checkpoint (no 'checkpoint' file)")
        return found
    text = str(path)
    for suffix in (".index", ".meta"):
        text = text.removesuffix(suffix)
    text = re.sub(r"\.data-\d+-of-\d+$", "", text)
    if not Path(text + ".index").is_file():
        raise ImportRefused(f"{path}: no {text}.index: give the checkpoint's prefix, e.g. model.ckpt")
    return text


def _find_cells(path: Path, shapes: dict[str, list[int]], scope: str | None) -> list[tuple[str, str]]:
    """[(parent scope, cell name)] bottom to top; refuses cells that do not map."""
    names = [n for n in shapes if scope is None or n.startswith(scope.rstrip("/") + "/")]
    for name in names:
        for mark, reason in _REFUSED:
            if mark.search(name) and not _is_slot(name):
                raise ImportRefused(
                    f"{path}: the cell of variable {name} {reason}: only plain LSTM cells are served"
                )
    found = [(m["parent"], m["cell"]) for n in names if (m := CELL.match(n)) and not _is_slot(n)]
    if not found:
        where = f" under --scope {scope}" if scope else ""
        raise ImportRefused(f"{path}: no basic_lstm_cell or lstm_cell kernel{where} (missing variables)")
    groups = sorted({re.sub(r"/cell_\d+$", "", parent) for parent, _ in found})
    if len(groups) > 1:
        raise ImportRefused(
            f"{path}: LSTM cells under several scopes ({', '.join(groups)}): choose one with --scope"
        )
    numbered = {int(m.group(1)): cell for parent, cell in found if (m := re.search(r"/cell_(\d+)$", parent))}
    if not numbered:
        return found[:1]
    missing = sorted(set(range(max(numbered) + 1)) - set(numbered))
    if missing:
        raise ImportRefused(f"{path}: {groups[0]} has no variables for cell_{missing[0]} (missing variables)")
    return [(f"{groups[0]}/cell_{index}", numbered[index]) for index in range(len(numbered))]


def _is_slot(name: str) -> bool:
    """An optimizer's copy of a variable (Adam's m and v...), not a variable of the model."""
    return (
        re.search(
            r"/(Adam|Adam_\d|Momentum|RMSProp|RMSProp_\d|Adagrad|Adadelta|Ftrl|ExponentialMovingAverage)$",
            name,
        )
        is not None
    )


def _head(path, reader, shapes, settings: ImportSettings, hidden: int):
    if settings.head_kernel is None:
        if settings.head is not None:  # a head asked for, with no weights to make it from
            raise ImportRefused(f"{path}: --head {settings.head} needs --head-kernel (and --head-bias)")
        return None
    for name in (settings.head_kernel, settings.head_bias):
        if name is not None and name not in shapes:
            raise ImportRefused(f"{path}: no variable {name} (missing variables)")
    kernel = _tensor(path, reader, settings.head_kernel)
    if kernel.ndim != 2 or kernel.shape[0] != hidden:
        raise ImportRefused(
            f"{path}: head kernel {settings.head_kernel} is {kernel.shape}, needs ({hidden}, outputs)"
        )
    bias = (
        _tensor(path, reader, settings.head_bias)
        if settings.head_bias
        else np.zeros(kernel.shape[1], np.float32)
    )
    if bias.shape != (kernel.shape[1],):
        raise ImportRefused(
            f"{path}: head bias {settings.head_bias} is {bias.shape}, needs ({kernel.shape[1]},)"
        )
    check_head(kernel.T, bias, hidden, f"{path}: head {settings.head_kernel}")
    return np.ascontiguousarray(kernel.T), bias


def _unused(shapes, names, settings: ImportSettings, hidden: int) -> list[str]:
    """A note for a (hidden, n) variable that looks like a head nobody asked for."""
    if settings.head_kernel is not None:
        return []
    used = {n for pair in names for n in pair}
    heads = [
        n for n, s in shapes.items() if n not in used and not _is_slot(n) and len(s) == 2 and s[0] == hidden
    ]
    return (
        [
            f"not imported: {', '.join(sorted(heads))} looks like a head; pass --head-kernel "
            "(and --head-bias, "
            "--head) to serve it"
        ]
        if heads
        else []
    )
