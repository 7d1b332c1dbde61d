"""The default model that `make model` builds (and `make serve` and `make test` depend on)."""

import numpy as np
import onnx
import pytest

from lstmserve import contract
from lstmserve.export.onnx import fingerprint, metadata
from lstmserve.export.verify import check_signature, run, session
from lstmserve.model.config import LSTMConfig
from lstmserve.model.data import load_dataset, split

from ..conftest import REPO

DEFAULT_MODEL = REPO / "models" / "digits" / "1" / "model.onnx"

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no default model: run `make model`")


@pytest.fixture(scope="module")
def default_model() -> onnx.ModelProto:
    return onnx.load(DEFAULT_MODEL)


def test_meets_the_contract(default_model):
    meta = metadata(default_model)
    config = LSTMConfig.from_json(meta[contract.META_CONFIG])
    assert config.input_size == 8 and config.head == "classify_last" and config.num_outputs == 10
    check_signature(default_model, config.num_layers, has_logits=True)
    assert meta[contract.META_FINGERPRINT] == fingerprint(default_model)


def test_classifies_held_out_digits_row_by_row(default_model):
    data, _ = load_dataset("digits")
    test = split(data, None, seed=0).test  # the split `lstmserve train` held out (seed 0)
    sess = session(default_model)
    feed = {contract.INPUT: test.inputs, contract.SEQUENCE_LENGTHS: np.full(len(test), 8, np.int32)}
    for value in sess.get_inputs()[2:]:
        feed[value.name] = np.zeros((len(test), value.shape[1]), np.float32)
    accuracy = (run(sess, feed)[contract.LOGITS].argmax(1) == test.targets).mean()
    assert accuracy >= 0.97


def test_streams_one_row_at_a_time(default_model):
    sess = session(default_model)
    data, _ = load_dataset("digits")
    x = data.inputs[:5]
    state = {value.name: np.zeros((5, value.shape[1]), np.float32) for value in sess.get_inputs()[2:]}
    for row in range(8):
        got = run(
            sess,
            {contract.INPUT: x[:, row : row + 1], contract.SEQUENCE_LENGTHS: np.ones(5, np.int32), **state},
        )
        state = {
            name.replace("final_", "initial_"): value
            for name, value in got.items()
            if name.startswith("final_")
        }
    whole = run(
        sess,
        {
            contract.INPUT: x,
            contract.SEQUENCE_LENGTHS: np.full(5, 8, np.int32),
            **{name: np.zeros_like(v) for name, v in state.items()},
        },
    )
    np.testing.assert_allclose(got[contract.LOGITS], whole[contract.LOGITS], atol=1e-5, rtol=0)
