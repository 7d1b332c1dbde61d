"""The check itself, in this process with PyTorch sources (no TensorFlow needed): it passes for any
nn.LSTM shape, and it fails when the weights are mapped wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lstmserve.export.onnx import export_model
from lstmserve.imports.check import check_import
from lstmserve.imports.errors import ImportCheckFailed
from lstmserve.imports.run import import_model
from lstmserve.imports.settings import ImportSettings
from lstmserve.imports.source import to_stack
from lstmserve.imports.torch_lstm import read_torch
from lstmserve.model.checkpoint import load_checkpoint


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    inputs=st.integers(1, 6),
    hidden=st.integers(1, 7),
    layers=st.integers(1, 3),
    bias=st.booleans(),
    head=st.sampled_from([None, "classify_last", "per_step"]),
    seed=st.integers(0, 2**16),
)
def test_any_nn_lstm_imports_and_loads(tmp_path, inputs, hidden, layers, bias, head, seed):
    torch.manual_seed(seed)
    module = nn.ModuleDict({"rnn": nn.LSTM(inputs, hidden, num_layers=layers, bias=bias)})
    if head is not None:
        module["fc"] = nn.Linear(hidden, 3)
    source = tmp_path / f"m{seed}.pt"
    torch.save(module.state_dict(), source)
    out = tmp_path / f"m{seed}.lstmserve.pt"
    result = import_model(source, ImportSettings(head=head), out=out, force=True)
    assert result.report.max_error <= 1e-5
    loaded = load_checkpoint(out)
    assert loaded.config.hidden_sizes == (hidden,) * layers
    assert loaded.config.head == (head or "none")
    assert loaded.data["imported_from"]["format"] == "torch"


@pytest.mark.parametrize("mistake", ["gates swapped", "recurrent bias dropped", "kernel transposed"])
def test_a_wrong_mapping_fails_the_check(tmp_path, mistake):
    torch.manual_seed(3)
    lstm = nn.LSTM(4, 4, num_layers=2)
    torch.save(lstm.state_dict(), tmp_path / "lstm.pt")
    imported = read_torch(tmp_path / "lstm.pt")
    layer = imported.layers[1]
    if mistake == "gates swapped":  # (i, f, g, o) read as (i, g, f, o): TF1's order mistaken for ours
        hidden = layer.hidden
        order = np.r_[0:hidden, 2 * hidden : 3 * hidden, hidden : 2 * hidden, 3 * hidden : 4 * hidden]
        layer.weight_ih, layer.weight_hh, layer.bias = (
            layer.weight_ih[order],
            layer.weight_hh[order],
            layer.bias[order],
        )
    elif mistake == "recurrent bias dropped":
        layer.bias = lstm.state_dict()["bias_ih_l1"].numpy()
    else:  # a square kernel transposes without a shape error
        layer.weight_hh = np.ascontiguousarray(layer.weight_hh.T.reshape(layer.weight_hh.shape))
    with pytest.raises(ImportCheckFailed, match="differs from the source framework"):
        check_import(imported, export_model(to_stack(imported)))
