"""The default model that `make model` builds (and `make serve` and `make test` depend on)."""

import hashlib

import numpy as np
import onnx
import pytest

from lstmserve import contract
from lstmserve.export.onnx import metadata
from lstmserve.export.verify import check_signature, run, session
from lstmserve.model.config import LSTMConfig
from lstmserve.model.data import load_dataset, split

from ..conftest import REPO
from .test_publish import strip_fingerprint_entry

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
    kept, entries = strip_fingerprint_entry(DEFAULT_MODEL.read_bytes())  # recomputed from the file
    assert meta[contract.META_FINGERPRINT] == entries[contract.META_FINGERPRINT]
    assert meta[contract.META_FINGERPRINT] == hashlib.sha256(kept).hexdigest()[:16]


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


DEFAULT_CHECKPOINT = REPO / "checkpoints" / "digits.pt"


def test_int8_of_the_default_model_stays_within_its_measured_error(tmp_path):
    """The figures README quotes, as bounds: int8 vs fp32 8.4e-2 on the per-step output and 1.9e-1 on
    the logits of the 180 held-out digits, the same accuracy; fed one row at a time, one digit per
    call, the logits 1.2e-1 from one call (each call quantizes its own activations)."""
    from lstmserve.export.publish import export_checkpoint

    if not DEFAULT_CHECKPOINT.exists():
        pytest.fail("no default checkpoint: run `make model`")
    result = export_checkpoint(DEFAULT_CHECKPOINT, tmp_path, "digits", quantize="int8")
    report = result.int8_report
    assert report is not None and report.fp32_accuracy is not None and report.int8_accuracy is not None
    assert report.int8_accuracy >= report.fp32_accuracy - 0.012, report.summary()  # 2 of 180 digits
    assert 0 < report.max_output_error <= 0.15, report.summary()
    fp32, int8 = session(onnx.load(result.model.path)), session(onnx.load(result.int8.path))
    data, _ = load_dataset("digits")
    test = split(data, None, seed=0).test
    whole = run(int8, zero_state_feed(int8, test.inputs))
    logits_fp32 = run(fp32, zero_state_feed(fp32, test.inputs))[contract.LOGITS]
    assert 0 < np.abs(whole[contract.LOGITS] - logits_fp32).max() <= 0.3
    worst = 0.0
    for digit in test.inputs[:60]:
        state = None
        for row in range(8):
            got = run(int8, zero_state_feed(int8, digit[None, row : row + 1], state))
            state = {k.replace("final_", "initial_"): v for k, v in got.items() if k.startswith("final_")}
        alone = run(int8, zero_state_feed(int8, digit[None]))
        worst = max(worst, float(np.abs(got[contract.LOGITS] - alone[contract.LOGITS]).max()))
    assert 0 < worst <= 0.2, worst


def zero_state_feed(sess, x, state=None):
    feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.full(len(x), x.shape[1], np.int32)}
    for value in sess.get_inputs()[2:]:
        zero = np.zeros((len(x), value.shape[1]), np.float32)
        feed[value.name] = zero if state is None else state[value.name]
    return feed
