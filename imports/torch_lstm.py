"""PyTorch: an nn.LSTM state_dict (any num_layers, bias or not) plus an optional nn.Linear head.

The file is read with `torch.load(weights_only=True)`, so loading it runs no code. Its state_dict may
be the LSTM's own (`weight_ih_l0`...), a whole module's (`lstm.weight_ih_l0`, `fc.weight`), a dict of
such dicts, or stacked single-layer nn.LSTMs (`layers.0.weight_ih_l0`, `layers.1...`), chained in
order. PyTorch's gate order is lstmserve's (i, f, g, o); biases b_ih + b_hh are summed.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from lstmserve.model.config import LSTMConfig

from .errors import ImportRefused
from .source import Imported, LayerWeights, check_chain, check_head
from .torch_check import torch_reference
from .torch_group import LSTMGroup

_LSTM_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)weight_ih_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_GATES = {1: "a plain RNN", 3: "a GRU", 4: "an LSTM"}
_WEIGHT_NAME = re.compile(r"(^|\.)(weight|bias)(_(ih|hh|hr)_l\d+(_reverse)?)?$")
_MAX_DEPTH = 16  # dicts inside dicts: a module's state_dict is flat, a checkpoint nests a few


def read_torch(path: Path, head: str | None = None, prefix: tuple[str, ...] | None = None) -> Imported:
    tensors = _flatten(path, _load(path))
    found = list(dict.fromkeys(m["prefix"] for key in tensors if (m := _LSTM_KEY.match(key))))
    if not found:
        raise ImportRefused(f"{path}: no nn.LSTM weights (weight_ih_l0) in this state_dict")
    if prefix is not None:
        prefixes = [p if p == "" or p.endswith(".") else p + "." for p in prefix]
        unknown = [p for p in prefixes if p not in found]
        if unknown:
            raise ImportRefused(
                f"{path}: no LSTM weights under --prefix {unknown[0].rstrip('.')!r}; found "
                f"{', '.join(repr(p.rstrip('.')) for p in found)}"
            )
    else:
        prefixes = _stack_order(path, found)
    groups = [_read_group(path, tensors, group) for group in prefixes]
    layers = [layer for group in groups for layer in group.layers]
    input_size = layers[0].weight_ih.shape[1]
    where = f"{path} ({' then '.join(repr(p.rstrip('.') or 'the LSTM') for p in prefixes)})"
    check_chain(layers, input_size, where)
    used = {key for group in groups for key in group.keys}
    notes = ["compared with nn.LSTM (and nn.Linear) built from the same state_dict, row by row"]
    if prefix is not None and head is None:  # one part of a bigger module, chosen: its head only if asked
        head_weights, head_prefix = None, ""
    else:
        head_weights, head_prefix = _find_head(path, tensors, used, layers[-1].hidden, head)
    if head_weights is not None:
        used |= {head_prefix + "weight", head_prefix + "bias"}
    left = [key for key in tensors if key not in used]
    if left and prefix is not None:
        chosen = " then ".join(p.rstrip(".") or "the top level" for p in prefixes)
        notes.append(f"left out, as --prefix chose {chosen}: {_listed(left)}")
    elif left:
        raise ImportRefused(
            f"{path}: weights that are neither the LSTM nor its head: {_listed(left)} (an embedding or "
            "another layer would be left out; --prefix imports one LSTM of several on purpose)"
        )
    config = LSTMConfig(
        input_size=int(input_size),
        hidden_sizes=tuple(int(layer.hidden) for layer in layers),
        head=head if head_weights is not None and head else "none",
        num_outputs=int(head_weights[0].shape[0]) if head_weights is not None else 0,
    )
    source: dict[str, object] = {
        "format": "torch",
        "path": str(path),
        "lstm": [p.rstrip(".") for p in prefixes],
    }
    if head_weights is not None:
        source["head"] = head_prefix.rstrip(".")
    return Imported(
        config,
        layers,
        head_weights,
        source,
        torch_reference(groups, config, head_weights),
        notes=notes,
    )


def _stack_order(path: Path, found: list[str]) -> list[str]:
    """One nn.LSTM, or the nn.LSTMs of one nn.ModuleList (layers.0., layers.1., ...) in index order.
    Named ones (encoder and decoder, say) are not a stack a state_dict can prove: --prefix says."""
    if len(found) == 1:
        return found
    indexed = [re.fullmatch(r"(.*?)(\d+)\.", p) for p in found]
    if all(indexed) and len({m.group(1) for m in indexed if m}) == 1:
        return sorted(found, key=lambda p: int(re.fullmatch(r".*?(\d+)\.", p).group(1)))  # type: ignore[union-attr]
    names = ", ".join(repr(p.rstrip(".")) for p in found)
    raise ImportRefused(
        f"{path}: several nn.LSTMs ({names}): name the one to import with --prefix, or several to chain "
        "in that order (--prefix A B)"
    )


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


def _read_group(path: Path, tensors: dict[str, np.ndarray], prefix: str) -> LSTMGroup:
    name = prefix.rstrip(".") or "the state_dict"
    keys = {key for key in tensors if key.startswith(prefix) and "." not in key[len(prefix) :]}
    if any(key.endswith("_reverse") for key in keys):
        raise ImportRefused(
            f"{path}: {name} is bidirectional (weights *_reverse): only forward LSTMs are served"
        )
    if any(key[len(prefix) :].startswith("weight_hr_l") for key in keys):
        raise ImportRefused(f"{path}: {name} has a projection (proj_size, weight_hr_l*): not supported")
    count = 1 + max(int(m["layer"]) for key in keys if (m := _LSTM_KEY.match(key)))
    has_bias = f"{prefix}bias_ih_l0" in tensors
    layers = []
    for index in range(count):
        names = [f"weight_ih_l{index}", f"weight_hh_l{index}"]
        names += [f"bias_ih_l{index}", f"bias_hh_l{index}"] if has_bias else []
        missing = [n for n in names if prefix + n not in tensors]
        if missing:
            raise ImportRefused(f"{path}: {name} layer {index} lacks {', '.join(missing)}")
        w_ih, w_hh = tensors[prefix + names[0]], tensors[prefix + names[1]]
        if w_ih.ndim != 2:
            raise ImportRefused(
                f"{path}: {name} layer {index}: weight_ih is {w_ih.shape}, not (gates*H, input)"
            )
        if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
            raise ImportRefused(f"{path}: {name} layer {index}: weight_hh is {w_hh.shape}, not (gates*H, H)")
        gates = w_hh.shape[0] // w_hh.shape[1]
        if gates != 4:
            kind = _GATES.get(gates, f"a cell of {gates} gates")
            raise ImportRefused(f"{path}: {name} layer {index} is {kind}, not an LSTM: only LSTMs are served")
        bias = np.zeros(w_hh.shape[0], np.float32)
        for bias_name in names[2:]:
            if tensors[prefix + bias_name].shape != bias.shape:
                shape = tensors[prefix + bias_name].shape
                raise ImportRefused(
                    f"{path}: {name} layer {index}: {bias_name} is {shape}, not ({bias.shape[0]},)"
                )
            bias = bias + tensors[prefix + bias_name]
        layers.append(LayerWeights(w_ih, w_hh, bias))
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if has_bias else [])
    own = {prefix + f"{kind}_l{index}" for index in range(count) for kind in kinds}
    return LSTMGroup(prefix, layers, {key: tensors[key] for key in sorted(own)}, has_bias)


def _find_head(path, tensors, used, hidden, head):
    """The one nn.Linear whose input is the top layer's hidden size, if any."""
    candidates = [
        key[: -len("weight")]
        for key, value in tensors.items()
        if key not in used and key.endswith("weight") and value.ndim == 2 and value.shape[1] == hidden
    ]
    if len(candidates) > 1:
        raise ImportRefused(
            f"{path}: several nn.Linear heads fit the LSTM ({', '.join(candidates)}): keep one"
        )
    if not candidates:
        if head not in (None, "none"):
            raise ImportRefused(f"{path}: --head {head} given, but no nn.Linear of input size {hidden} found")
        return None, ""
    prefix = candidates[0]
    if head in (None, "none"):
        raise ImportRefused(
            f"{path}: found an nn.Linear head at {prefix.rstrip('.') or 'the top'}: say how it is used, "
            "--head classify_last (logits from the last step) or --head per_step"
        )
    weight = tensors[prefix + "weight"]
    bias = tensors.get(prefix + "bias", np.zeros(weight.shape[0], np.float32))
    check_head(weight, bias, hidden, f"{path}: nn.Linear {prefix.rstrip('.') or 'the top'}")
    return (weight, bias), prefix


def _load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ImportRefused(
            f"{path}: not a state_dict that torch.load(weights_only=True) reads ({type(exc).__name__}); "
            "save model.state_dict(), not the module"
        ) from None


def _flatten(path: Path, data, prefix: str = "", depth: int = 0) -> dict[str, np.ndarray]:
    """{name: float32 array} from a state_dict, a dict of state_dicts, or {'state_dict': ...}."""
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):  # a training checkpoint
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ImportRefused(f"{path}: expected a state_dict (a dict of tensors), found {type(data).__name__}")
    if depth > _MAX_DEPTH:  # pickle can make a dict that holds itself
        raise ImportRefused(
            f"{path}: the state_dict nests dicts more than {_MAX_DEPTH} deep at {prefix[:80]!r}"
        )
    flat: dict[str, np.ndarray] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(path, value, name + ".", depth + 1))
        elif isinstance(value, torch.Tensor):
            if value.is_floating_point():
                flat[name] = _to_numpy(path, name, value)
            elif _WEIGHT_NAME.search(name):
                raise ImportRefused(
                    f"{path}: {name} holds {value.dtype} values: an LSTM's weights are floating point"
                )
        # other entries (epoch numbers, optimizer settings) carry no weights
    return flat


def _to_numpy(path: Path, name: str, value: torch.Tensor) -> np.ndarray:
    if value.device.type != "cpu":  # map_location moves real tensors; "meta" ones hold no values
        raise ImportRefused(f"{path}: {name} is a tensor on the {value.device.type} device, without values")
    if value.layout != torch.strided:
        raise ImportRefused(f"{path}: {name} is a {value.layout} tensor: save dense tensors (.to_dense())")
    # An expand()ed tensor declares more values than its file holds; copying it could take any memory.
    if value.numel() * value.element_size() > value.untyped_storage().nbytes():
        raise ImportRefused(
            f"{path}: {name} declares {tuple(value.shape)} but its storage holds "
            f"{value.untyped_storage().nbytes() // value.element_size()} values (an expanded tensor)"
        )
    return value.detach().to(torch.float32).numpy()
