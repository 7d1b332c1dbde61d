"""The exported graph against the contract, at many shapes: torch 2.13's exporters have frozen axes."""

import json

import numpy as np
import onnx
import pytest
import torch

from lstmserve import __version__, contract
from lstmserve.export.errors import VerificationError
from lstmserve.export.onnx import export_model, fingerprint, metadata
from lstmserve.export.verify import random_feed, run, session, verify_export
from lstmserve.model.config import LSTMConfig
from lstmserve.model.stack import LSTMStack

HEADS = [("none", 0), ("classify_last", 4), ("per_step", 3)]


def make_stack(head: str, num_outputs: int) -> LSTMStack:
    torch.manual_seed(0)
    labels = tuple(f"class{i}" for i in range(num_outputs))
    config = LSTMConfig(input_size=5, hidden_sizes=(12, 7), head=head, num_outputs=num_outputs, labels=labels)
    return LSTMStack(config).eval()


@pytest.fixture(scope="module", params=HEADS, ids=[head for head, _ in HEADS])
def exported(request):
    stack = make_stack(*request.param)
    return stack, export_model(stack)


def test_signature_follows_the_contract(exported):
    stack, model = exported
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    assert inputs == ["input", "sequence_lengths", "initial_c_0", "initial_h_0", "initial_c_1", "initial_h_1"]
    expected = ["output", "final_c_0", "final_h_0", "final_c_1", "final_h_1"]
    assert outputs == expected + (["logits"] if stack.config.head != "none" else [])
    types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    assert types["sequence_lengths"] == onnx.TensorProto.INT32 and types["input"] == onnx.TensorProto.FLOAT
    assert sum(node.op_type == "LSTM" for node in model.graph.node) == 2  # native nodes, no unrolling


@pytest.mark.parametrize(("batch", "time"), [(1, 1), (1, 17), (5, 1), (2, 3), (16, 40)])
def test_runs_at_any_batch_and_time(exported, batch, time):
    stack, model = exported
    feed = random_feed(stack, batch, time, np.random.default_rng(batch * 100 + time))
    got = run(session(model), feed)
    state = [
        (torch.from_numpy(feed[f"initial_c_{layer}"]), torch.from_numpy(feed[f"initial_h_{layer}"]))
        for layer in range(2)
    ]
    with torch.no_grad():
        want = stack(torch.from_numpy(feed["input"]), state)
    assert got["output"].shape == (batch, time, 7)
    np.testing.assert_allclose(got["output"], want.output.numpy(), atol=1e-5, rtol=0)
    for layer, (c, h) in enumerate(want.state):
        np.testing.assert_allclose(got[f"final_c_{layer}"], c.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got[f"final_h_{layer}"], h.numpy(), atol=1e-5, rtol=0)
    if want.logits is not None:
        np.testing.assert_allclose(got["logits"], want.logits.numpy(), atol=1e-5, rtol=0)


def test_zero_length_rows_keep_their_state_and_padding_is_zero(exported):
    stack, model = exported
    lengths = np.array([0, 3, 0, 6, 1], np.int32)
    feed = random_feed(stack, 5, 6, np.random.default_rng(7), lengths)
    got = run(session(model), feed)
    for row in (0, 2):
        for layer in range(2):
            assert np.array_equal(got[f"final_c_{layer}"][row], feed[f"initial_c_{layer}"][row])
            assert np.array_equal(got[f"final_h_{layer}"][row], feed[f"initial_h_{layer}"][row])
    for row, length in enumerate(lengths):
        assert not got["output"][row, length:].any()
        if stack.config.head == "per_step":
            assert not got["logits"][row, length:].any()


def test_lengths_out_of_range_are_refused_by_onnxruntime(exported):
    stack, model = exported
    feed = random_feed(stack, 2, 4, np.random.default_rng(0), np.array([2, 5], np.int32))
    with pytest.raises(Exception, match="must be >= 0 and <= seq_length"):
        run(session(model), feed)


def test_metadata_carries_config_labels_version_and_fingerprint(exported):
    stack, model = exported
    meta = metadata(model)
    assert LSTMConfig.from_json(meta[contract.META_CONFIG]) == stack.config
    assert meta[contract.META_HEAD] == stack.config.head
    assert json.loads(meta[contract.META_LABELS]) == list(stack.config.labels)
    assert meta[contract.META_VERSION] == __version__
    assert meta[contract.META_QUANTIZATION] == "none"
    assert meta[contract.META_FINGERPRINT] == fingerprint(model)
    assert len(meta[contract.META_FINGERPRINT]) == 16


def test_fingerprint_tells_models_apart():
    a = export_model(make_stack("none", 0))
    torch.manual_seed(1)
    b = export_model(LSTMStack(make_stack("none", 0).config).eval())
    assert metadata(a)[contract.META_FINGERPRINT] != metadata(b)[contract.META_FINGERPRINT]
    assert (
        metadata(a)[contract.META_FINGERPRINT]
        == metadata(export_model(make_stack("none", 0)))[contract.META_FINGERPRINT]
    )


def test_verification_passes_on_a_faithful_export(exported):
    stack, model = exported
    report = verify_export(model, stack)
    assert report.max_error <= 1e-5 and report.chunked_error <= 1e-5
    assert len(report.cases) == 8


# The verifier must catch each way an export can break: these graphs are broken on purpose.


def _without_lengths(model):
    for node in model.graph.node:
        if node.op_type == "LSTM":
            node.input[4] = ""
    return model


def _without_state_guard(model):
    # Each Where picks the LSTM's state or, for 0-length rows, the incoming one; make both the LSTM's.
    for node in model.graph.node:
        if node.op_type == "Where":
            node.input[2] = node.input[1]
    return model


def _with_frozen_time(model):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    return model


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_without_lengths, "ragged lengths"),
        (_without_state_guard, "ragged lengths"),
        (_with_frozen_time, "input: time axis is not dynamic"),
    ],
)
def test_verification_fails_loudly_on_a_broken_graph(breakage, message):
    stack = make_stack("classify_last", 4)
    with pytest.raises(VerificationError, match=message):
        verify_export(breakage(export_model(stack)), stack)


def test_verification_fails_when_weights_differ():
    stack = make_stack("classify_last", 4)
    model = export_model(stack)
    with torch.no_grad():
        stack.head.bias += 1e-3  # ten times the tolerance, scaled by 1 + |logit| (logits here are < 1)
    with pytest.raises(
        VerificationError, match=r"batch 1 x time 1: ORT differs from PyTorch by [5-9]\.\d\de-04"
    ):
        verify_export(model, stack)
