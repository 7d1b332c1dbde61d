"""Built-in data sets as batch-major sequences, and the seeded train/validation/test split.

- digits: scikit-learn's bundled 8x8 handwritten digits, read row by row (8 steps x 8 features).
- mnist:  the standard IDX files in a folder the user gives (28 steps x 28 features).
- sines:  generated sensor-like series, next value as target (regression; model/generated.py).
- text:   Python's own documentation text, next character as target (model/generated.py).
- npz:    a user's `inputs` (n, time, features) with `labels` (n,) or per-step `targets` (n, time),
          and optional `lengths` (n,) for padded sequences and `label_names`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import generated
from .errors import DataError
from .idx import find_idx, read_idx

DATASETS = ("digits", "mnist", "sines", "text", "npz")


@dataclass(frozen=True)
class SequenceData:
    inputs: np.ndarray  # (n, time, input_size) float32
    targets: np.ndarray  # (n,) class ids (classify_last), (n, time) per step (per_step), int64; or
    # (n, time, k) float32 values per step (a regression: per_step with the mse loss)
    lengths: np.ndarray | None  # (n,) valid steps per row; None: every row is full length
    labels: tuple[str, ...] = ()  # class names, if known

    @property
    def head(self) -> str:
        return "classify_last" if self.targets.ndim == 1 else "per_step"

    @property
    def loss(self) -> str:
        return "mse" if self.targets.dtype.kind == "f" else "cross_entropy"

    @property
    def num_outputs(self) -> int:
        if self.loss == "mse":
            return int(self.targets.shape[2])
        return len(self.labels) or int(self.targets.max()) + 1

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, rows: np.ndarray) -> SequenceData:
        lengths = None if self.lengths is None else self.lengths[rows]
        return SequenceData(self.inputs[rows], self.targets[rows], lengths, self.labels)


@dataclass(frozen=True)
class Splits:
    train: SequenceData
    val: SequenceData
    test: SequenceData


def load_dataset(name: str, path: str | None = None) -> tuple[SequenceData, SequenceData | None]:
    """The data set, and its own test set where it ships one (MNIST's t10k files)."""
    if name == "digits":
        return _digits(), None
    if name == "mnist":
        if not path:
            raise DataError("mnist needs --data-path: a folder holding MNIST's IDX files")
        return _mnist(Path(path))
    if name == "sines":
        return SequenceData(*generated.sines(), None), None
    if name == "text":
        return SequenceData(*generated.text(), None, generated.ALPHABET), None
    if name == "npz":
        if not path:
            raise DataError("npz needs --data-path: an .npz file of inputs and labels or targets")
        return _npz(Path(path)), None
    raise DataError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")


def split(
    data: SequenceData,
    test: SequenceData | None,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """A seeded shuffle into train/validation/test; a given test set is kept as it is."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, round(len(data) * val_fraction))
    n_test = 0 if test is not None else max(1, round(len(data) * test_fraction))
    if len(data) - n_val - n_test < 1:
        raise DataError(f"{len(data)} sequences are too few to split into train/validation/test")
    val, held_out, train = np.split(order, [n_val, n_val + n_test])
    return Splits(data.subset(train), data.subset(val), test if test is not None else data.subset(held_out))


def _digits() -> SequenceData:
    from sklearn.datasets import load_digits

    digits = load_digits()  # bundled with scikit-learn: nothing is downloaded
    inputs = (digits.images / 16.0).astype(np.float32)  # (1797, 8 rows = time, 8 columns = features)
    return SequenceData(inputs, digits.target.astype(np.int64), None, tuple(str(d) for d in range(10)))


def _mnist(folder: Path) -> tuple[SequenceData, SequenceData | None]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (mnist needs the folder holding its IDX files)")
    train = _mnist_pair(folder, "train")
    if train is None:
        raise DataError(f"{folder}: no train-images-idx3-ubyte and train-labels-idx1-ubyte (plain or .gz)")
    return train, _mnist_pair(folder, "t10k")


def _mnist_pair(folder: Path, kind: str) -> SequenceData | None:
    images_path = find_idx(folder, f"{kind}-images-idx3-ubyte")
    labels_path = find_idx(folder, f"{kind}-labels-idx1-ubyte")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = f"{kind}-images-idx3-ubyte" if images_path is None else f"{kind}-labels-idx1-ubyte"
        raise DataError(f"{folder}: {missing} is missing (plain or .gz)")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: images must be (n, rows, columns), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path}: {labels.shape} labels for {len(images)} images in {images_path.name}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{labels_path}: MNIST labels must be 0-9, found {labels.min()}-{labels.max()}")
    inputs = images.astype(np.float32) / 255.0  # each image row is one time step
    return SequenceData(inputs, labels.astype(np.int64), None, tuple(str(d) for d in range(10)))


def _npz(path: Path) -> SequenceData:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError):
        raise DataError(f"{path}: not a readable .npz archive") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive of named arrays (np.savez)")
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError:  # object arrays need pickle, which we never allow
                raise DataError(
                    f"{path}: '{key}' is a ragged (object) array; pad every sequence to the longest "
                    "time and give each one's valid steps in a 'lengths' array"
                ) from None
    return _check_npz(path, arrays)


def _check_npz(path: Path, arrays: dict[str, np.ndarray]) -> SequenceData:
    if "inputs" not in arrays:
        raise DataError(f"{path}: no 'inputs' array (found: {', '.join(arrays) or 'nothing'})")
    inputs = arrays["inputs"]
    if inputs.ndim != 3 or 0 in inputs.shape:
        raise DataError(
            f"{path}: 'inputs' must be (n, time, features), got {inputs.shape}; "
            "for one feature per step reshape to (n, time, 1)"
        )
    if not np.issubdtype(inputs.dtype, np.number):
        raise DataError(f"{path}: 'inputs' must be numeric, got {inputs.dtype}")
    inputs = inputs.astype(np.float32)
    if not np.isfinite(inputs).all():
        raise DataError(f"{path}: 'inputs' holds NaN or infinite values")
    n, time = inputs.shape[:2]
    has_labels, has_targets = "labels" in arrays, "targets" in arrays
    if has_labels == has_targets:
        raise DataError(
            f"{path}: give exactly one of 'labels' (n,) for one class per sequence or "
            "'targets' (n, time) for a class per step"
        )
    targets = arrays["labels"] if has_labels else arrays["targets"]
    lengths = _npz_lengths(path, arrays.get("lengths"), n, time)
    if has_targets and targets.ndim == 3 and np.issubdtype(targets.dtype, np.floating):
        # Values per step, (n, time, k): a regression (a forecaster's next values).
        if targets.shape[:2] != (n, time) or targets.shape[2] == 0:
            raise DataError(
                f"{path}: float 'targets' must be (n, time, k) = ({n}, {time}, k), got {targets.shape}"
            )
        if not np.isfinite(targets).all():
            raise DataError(f"{path}: 'targets' holds NaN or infinite values")
        return SequenceData(inputs, targets.astype(np.float32), lengths)
    key, want = ("labels", (n,)) if has_labels else ("targets", (n, time))
    if targets.shape != want:
        raise DataError(f"{path}: '{key}' must be {want} to match 'inputs', got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise DataError(
            f"{path}: '{key}' must hold integer class ids, got {targets.dtype} (float targets of shape "
            "(n, time, k) train a regression)"
        )
    if has_targets and lengths is not None:
        # Padding past a row's length may hold anything (often -1): it is never trained on.
        targets = np.where(np.arange(time) < lengths[:, None], targets, 0)
    if targets.min() < 0:
        raise DataError(f"{path}: '{key}' holds negative class ids")
    labels: tuple[str, ...] = ()
    if "label_names" in arrays:
        labels = tuple(str(name) for name in arrays["label_names"].tolist())
        if int(targets.max()) >= len(labels):
            raise DataError(
                f"{path}: class id {int(targets.max())} has no entry in 'label_names' ({len(labels)})"
            )
    return SequenceData(inputs, targets.astype(np.int64), lengths, labels)


def _npz_lengths(path: Path, lengths: np.ndarray | None, n: int, time: int) -> np.ndarray | None:
    if lengths is None:
        return None
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"{path}: 'lengths' must be ({n},) integers, got {lengths.shape} {lengths.dtype}")
    bad = np.flatnonzero((lengths < 1) | (lengths > time))
    if bad.size:
        raise DataError(f"{path}: 'lengths' must be in [1, {time}]; row {bad[0]} has {lengths[bad[0]]}")
    return lengths.astype(np.int64)
