import gzip

import numpy as np
import pytest

from lstmserve.model.data import SequenceData, load_dataset, split
from lstmserve.model.errors import DataError
from lstmserve.model.idx import read_idx

from .idx_files import idx_bytes, write_mnist


def test_digits_are_read_row_by_row():
    data, test = load_dataset("digits")
    assert test is None
    assert data.inputs.shape == (1797, 8, 8) and data.inputs.dtype == np.float32
    # scikit-learn's 0-16 pixel counts, scaled to 0-1: every value a sixteenth, both ends reached.
    assert data.inputs.min() == 0.0 and data.inputs.max() == 1.0
    assert np.array_equal(data.inputs * 16, np.round(data.inputs * 16))
    assert data.head == "classify_last" and data.num_outputs == 10


def test_split_is_seeded_and_disjoint():
    digits, _ = load_dataset("digits")
    # The digits, each row tagged with its index in its first value: which rows went where.
    inputs = digits.inputs.copy()
    inputs[:, 0, 0] = np.arange(len(digits))
    data = SequenceData(inputs, digits.targets, None, digits.labels)

    def rows(part) -> set[int]:
        tags = part.inputs[:, 0, 0].astype(int)
        assert np.array_equal(part.targets, digits.targets[tags])  # targets travel with their rows
        return set(tags.tolist())

    a, b = split(data, None, seed=3), split(data, None, seed=3)
    train, val, test = rows(a.train), rows(a.val), rows(a.test)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(len(data)))
    assert (len(val), len(test)) == (180, 180)  # 10% each of 1797
    assert (rows(b.train), rows(b.val), rows(b.test)) == (train, val, test)  # same seed, same split
    assert rows(split(data, None, seed=4).test) != test


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_plain_or_gzipped(tmp_path, gz):
    train, test = load_dataset("mnist", str(write_mnist(tmp_path, gz=gz)))
    assert train.inputs.shape == (60, 28, 28) and test.inputs.shape == (20, 28, 28)
    assert train.inputs.max() == 1.0 and train.targets.dtype == np.int64


def test_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(tmp_path / "a"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file"),
        (b"\x50\x4b\x03\x04rest", "bad magic number"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated IDX header"),
        (idx_bytes(np.zeros((4, 28, 28)))[:-100], r"truncated: header says \(4, 28, 28\)"),
        (idx_bytes(np.zeros((4, 28, 28))) + b"xx", "2 bytes after the"),
    ],
)
def test_malformed_idx_files_are_named(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_cut_off_gzip_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    packed = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 255, (4, 28, 28))))
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(path)


def test_mnist_folder_problems_are_named(tmp_path):
    with pytest.raises(DataError, match="needs --data-path"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path))
    folder = write_mnist(tmp_path / "m")
    (folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is missing"):
        load_dataset("mnist", str(folder))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7)))
    with pytest.raises(DataError, match=r"\(7,\) labels for 60 images"):
        load_dataset("mnist", str(folder))


def test_unknown_dataset():
    with pytest.raises(
        DataError, match="unknown data set 'cifar': choose one of digits, mnist, sines, text, npz"
    ):
        load_dataset("cifar")


def test_npz_per_step_targets_with_lengths(tmp_path):
    path = tmp_path / "seq.npz"
    targets = np.full((3, 5), -1)
    targets[0, :2], targets[1], targets[2, :4] = 1, 2, 0
    np.savez(
        path,
        inputs=np.ones((3, 5, 2)),
        targets=targets,
        lengths=np.array([2, 5, 4]),
        label_names=np.array(["a", "b", "c"]),
    )
    data, _ = load_dataset("npz", str(path))
    assert data.head == "per_step" and data.labels == ("a", "b", "c") and data.num_outputs == 3
    assert data.targets.min() == 0  # -1 padding past each length is never trained on


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": np.zeros(3, int)}, "no 'inputs' array"),
        ({"inputs": np.ones((3, 5))}, r"'inputs' must be \(n, time, features\)"),
        ({"inputs": np.ones((3, 5, 2))}, "give exactly one of 'labels'"),
        ({"inputs": np.ones((3, 5, 2)), "labels": np.zeros(2, int)}, r"'labels' must be \(3,\)"),
        ({"inputs": np.ones((3, 5, 2)), "labels": np.zeros(3)}, "integer class ids"),
        ({"inputs": np.ones((3, 5, 2)), "labels": -np.ones(3, int)}, "negative class ids"),
        ({"inputs": np.full((3, 5, 2), np.nan), "labels": np.zeros(3, int)}, "NaN or infinite"),
        (
            {"inputs": np.ones((3, 5, 2)), "labels": np.zeros(3, int), "lengths": np.array([1, 6, 2])},
            r"'lengths' must be in \[1, 5\]; row 1 has 6",
        ),
        (
            {"inputs": np.ones((3, 5, 2)), "labels": np.zeros(3, int), "lengths": np.array([1, 0, 2])},
            "row 1 has 0",
        ),
        (
            {
                "inputs": np.ones((3, 5, 2)),
                "labels": np.array([0, 1, 4]),
                "label_names": np.array(["a", "b"]),
            },
            "class id 4 has no entry in 'label_names'",
        ),
    ],
)
def test_npz_problems_are_named(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset("npz", str(path))


def test_ragged_npz_asks_for_padding_and_lengths(tmp_path):
    path = tmp_path / "ragged.npz"
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.ones((3, 2)), np.ones((5, 2))
    np.savez(path, inputs=ragged, labels=np.zeros(2, int))
    with pytest.raises(DataError, match="'inputs' is a ragged .* give each one's valid steps in a 'lengths'"):
        load_dataset("npz", str(path))


def test_a_npy_file_given_as_npz_is_named(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((3, 4, 2)))
    with pytest.raises(DataError, match="a single .npy array, not an .npz archive"):
        load_dataset("npz", str(path))


def test_npz_that_is_not_one(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset("npz", str(path))
    with pytest.raises(DataError, match="no such file"):
        load_dataset("npz", str(tmp_path / "missing.npz"))


def test_generated_data_sets():
    inputs, targets = load_dataset("sines")[0].inputs, load_dataset("sines")[0].targets
    assert inputs.shape == targets.shape == (800, 80, 1) and targets.dtype == np.float32
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # each target is the next input
    text = load_dataset("text")[0]
    assert (
        text.loss == "cross_entropy" and text.head == "per_step" and len(text.labels) == text.inputs.shape[2]
    )
    np.testing.assert_array_equal(text.inputs[:, 1:].argmax(2), text.targets[:, :-1])
    assert load_dataset("sines")[0].loss == "mse"


def test_npz_float_targets_are_a_regression(tmp_path):
    inputs = np.random.default_rng(0).random((5, 4, 2), dtype=np.float32)
    np.savez(tmp_path / "r.npz", inputs=inputs, targets=inputs[:, :, :1] * 2)
    data = load_dataset("npz", str(tmp_path / "r.npz"))[0]
    assert (data.loss, data.head, data.num_outputs) == ("mse", "per_step", 1)
    np.savez(tmp_path / "bad.npz", inputs=inputs, targets=np.zeros((5, 3, 1), np.float32))
    with pytest.raises(DataError, match=r"float 'targets' must be \(n, time, k\) = \(5, 4, k\)"):
        load_dataset("npz", str(tmp_path / "bad.npz"))
