"""`lstmserve import` on damaged and hostile files: each is refused with one line naming the problem,
exit code 2, no traceback, no huge allocation, and nothing written.

PyTorch cases run in this process; Keras and TF1 cases run in one batch subprocess (run_batch), so
TensorFlow stays out of the test process. The malformed files are made here, by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lstmserve.cli import main

from .conftest import run_batch

ERROR = "lstmserve import: error:"


def _refused(code: int, stderr: str, words: str, out: Path) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert words in lines[0], lines[0]
    assert not out.exists() and not Path(str(out) + ".tmp").exists()  # nothing written


# ---- PyTorch, in this process ----------------------------------------------------------------------


def _lstm() -> dict:
    torch.manual_seed(0)
    return dict(nn.LSTM(3, 5, num_layers=2).state_dict())


def _cyclic() -> dict:
    state = _lstm()
    state["self"] = state  # pickle (and weights_only) can make a dict that holds itself
    return state


TORCH = {  # name -> (payload, flags, words of the refusal)
    "bias_wrong_size": (
        lambda: {**_lstm(), "bias_ih_l0": torch.randn(7)},
        (),
        "bias_ih_l0 is (7,), not (20,)",
    ),
    "weight_ih_1d": (lambda: {**_lstm(), "weight_ih_l0": torch.randn(20)}, (), "weight_ih is (20,)"),
    "weight_int": (
        lambda: {**_lstm(), "weight_ih_l0": torch.randint(0, 3, (20, 3))},
        (),
        "weight_ih_l0 holds torch.int64 values",
    ),
    "expanded_huge": (
        lambda: {**_lstm(), "weight_ih_l0": torch.zeros(1).expand(20, 10**9)},
        (),
        "declares (20, 1000000000) but its storage holds 1 values",
    ),
    "sparse": (lambda: {**_lstm(), "weight_ih_l0": torch.randn(20, 3).to_sparse()}, (), "sparse_coo tensor"),
    "cyclic": (_cyclic, (), "nests dicts more than"),
    "nan": (
        lambda: {**_lstm(), "weight_hh_l1": torch.full((20, 5), float("nan"))},
        (),
        "layer 1: recurrent weights hold 100 NaN or infinite values",
    ),
    "head_bias_wrong": (
        lambda: {**_lstm(), "fc.weight": torch.randn(4, 5), "fc.bias": torch.randn(3)},
        ("--head", "per_step"),
        "head bias is (3,), needs (4,)",
    ),
    "a_list": (lambda: [torch.randn(3)], (), "expected a state_dict (a dict of tensors), found list"),
    "layer_gap": (
        lambda: {k.replace("_l1", "_l2"): v for k, v in _lstm().items()},
        (),
        "layer 1 lacks weight_ih_l1",
    ),
}


@pytest.mark.parametrize("name", TORCH)
def test_torch_refused(tmp_path, capsys, name):
    make, flags, words = TORCH[name]
    source, out = tmp_path / "model.pt", tmp_path / "out.pt"
    torch.save(make(), source)
    code = main(["import", str(source), *flags, "--out", str(out)])
    _refused(code, capsys.readouterr().err, words, out)


@pytest.fixture(scope="module")
def good_pt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "lstm.pt"
    torch.save(_lstm(), path)
    return path


def test_out_below_a_file_is_refused_before_the_work(tmp_path, capsys, good_pt):
    out = good_pt.parent / "lstm.pt" / "x.pt"
    code = main(["import", str(good_pt), "--out", str(out)])
    _refused(code, capsys.readouterr().err, "is a file, not a folder", out)


def test_out_that_is_a_folder_is_refused(tmp_path, capsys, good_pt):
    code = main(["import", str(good_pt), "--out", str(tmp_path), "--force"])
    _refused(code, capsys.readouterr().err, "is a folder, not a file", tmp_path / "none")


def test_repository_that_is_a_file_is_refused(tmp_path, capsys, good_pt):
    out = tmp_path / "out.pt"
    code = main(["import", str(good_pt), "--name", "m", "--repository", str(good_pt), "--out", str(out)])
    _refused(code, capsys.readouterr().err, "is a file, not a folder", out)


def test_existing_version_leaves_no_checkpoint_behind(tmp_path, capsys, good_pt):
    (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "1" / "model.onnx").write_bytes(b"taken")
    out = tmp_path / "out.pt"
    argv = ["import", str(good_pt), "--name", "m", "--repository", str(tmp_path / "repo"), "--version", "1"]
    code = main([*argv, "--out", str(out)])
    _refused(code, capsys.readouterr().err, "already exists; pass --force", out)
    assert (tmp_path / "repo" / "m" / "1" / "model.onnx").read_bytes() == b"taken"


# ---- Keras and TF1, one subprocess ------------------------------------------------------------------

_LAYERS = [
    {"class_name": "InputLayer", "config": {"name": "input", "batch_shape": [None, None, 3]}},
    {
        "class_name": "LSTM",
        "config": {
            "name": "lstm",
            "units": 2,
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "return_sequences": False,
        },
    },
    {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "linear"}},
]
_WEIGHTS = {  # .keras layout: layers/NAME/.../vars/i
    "layers/lstm/cell/vars/0": np.ones((3, 8), "f4"),
    "layers/lstm/cell/vars/1": np.ones((2, 8), "f4"),
    "layers/lstm/cell/vars/2": np.ones(8, "f4"),
    "layers/dense/vars/0": np.ones((2, 2), "f4"),
    "layers/dense/vars/1": np.ones(2, "f4"),
}


def _config(layers=None) -> dict:
    return {"class_name": "Sequential", "config": {"name": "s", "layers": layers or _LAYERS}}


def _keras(path: Path, config=None, weights=None, raw_config: bytes | None = None, huge: str = "") -> Path:
    h5 = path.with_suffix(".weights.h5")
    with h5py.File(h5, "w") as file:
        for key, value in (weights or _WEIGHTS).items():
            if key == huge:  # declared, never written: reading it would allocate 80 GB of zeros
                file.create_dataset(key, shape=(2, 10**10), dtype="f4", chunks=(1, 1024))
            else:
                file[key] = value
    with zipfile.ZipFile(path, "w") as archive:  # stored, not deflated: bytes can be damaged in place
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("config.json", raw_config or json.dumps(config or _config()).encode())
        archive.write(h5, "model.weights.h5")
    return path


def _h5(path: Path, raw_config: str, weight_names: list[bytes]) -> Path:
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = raw_config
        file.attrs["keras_version"] = "3.0.0"
        group = file.create_group("model_weights/lstm")
        group.attrs["weight_names"] = np.array(weight_names)
        group["lstm/kernel"] = np.ones((3, 8), "f4")
    return path


def _with(name: str, value) -> dict:
    return {**_WEIGHTS, name: value}


def _units(units) -> dict:
    layers = json.loads(json.dumps(_LAYERS))
    layers[1]["config"]["units"] = units
    return _config(layers)


def _damaged_crc(path: Path) -> Path:
    _keras(path)
    data = path.read_bytes()
    at = data.index(b'"class_name": "Sequential"')
    path.write_bytes(data[:at] + b"X" + data[at + 1 :])
    return path


KERAS = {  # name -> (make the file in a folder, words of the refusal)
    "zip_crc": (lambda d: _damaged_crc(d / "m.keras"), "cannot read config.json from the zip (BadZipFile"),
    "config_not_json": (
        lambda d: _keras(d / "m.keras", raw_config=b"{not json"),
        "its config.json is not JSON",
    ),
    "config_a_list": (lambda d: _keras(d / "m.keras", raw_config=b"[1, 2]"), "is a JSON list, not an object"),
    "no_layers": (
        lambda d: _keras(d / "m.keras", config={"class_name": "Sequential", "config": {}}),
        "has no list of layers with class_name",
    ),
    "layer_without_class": (
        lambda d: _keras(d / "m.keras", config=_config([{"config": {}}])),
        "has no list of layers with class_name",
    ),
    "units_0": (lambda d: _keras(d / "m.keras", config=_units(0)), "LSTM 'lstm' has units=0"),
    "units_disagree": (
        lambda d: _keras(d / "m.keras", config=_units(3)),
        "says units=3, but its recurrent_kernel",
    ),
    "kernel_1d": (
        lambda d: _keras(d / "m.keras", weights=_with("layers/lstm/cell/vars/0", np.ones(24, "f4"))),
        "has kernel (24,)",
    ),
    "kernel_strings": (
        lambda d: _keras(d / "m.keras", weights=_with("layers/lstm/cell/vars/0", np.full((3, 8), b"x"))),
        "values, not numbers",
    ),
    "kernel_nan": (
        lambda d: _keras(
            d / "m.keras", weights=_with("layers/lstm/cell/vars/0", np.full((3, 8), np.nan, "f4"))
        ),
        "input weights hold 24 NaN or infinite values",
    ),
    "kernel_huge": (
        lambda d: _keras(d / "m.keras", huge="layers/lstm/cell/vars/0"),
        "declare (2, 10000000000) but the file stores 0 bytes",
    ),
    "dense_bias_wrong": (
        lambda d: _keras(d / "m.keras", weights=_with("layers/dense/vars/1", np.ones(5, "f4"))),
        "head bias is (5,), needs (2,)",
    ),
    "no_lstm_bias": (
        lambda d: _keras(
            d / "m.keras", weights={k: v for k, v in _WEIGHTS.items() if k != "layers/lstm/cell/vars/2"}
        ),
        "has 2 weight arrays, expected kernel, recurrent_kernel and bias (use_bias=True)",
    ),
    "h5_config_garbage": (lambda d: _h5(d / "m.h5", "{{garbage", []), "its model_config is not JSON"),
    "h5_weight_names_missing": (
        lambda d: _h5(d / "m.h5", json.dumps(_config()), [b"lstm/kernel", b"lstm/nope"]),
        "layer 'lstm' names weights it does not hold: 'lstm/nope'",
    ),
}

# name -> (checkpoint to copy, what to do to the copy, extra flags, words of the refusal)
TF1 = {
    "data_missing": ("tf1_basic", "delete data", (), "cannot read rnn/multi_rnn_cell/cell_0"),
    "data_truncated": ("tf1_basic", "truncate data", (), "from the checkpoint's data"),
    "meta_garbage": ("tf1_basic", "garbage meta", (), "model.ckpt.meta is not a MetaGraphDef"),
    "checkpoint_file_garbage": (
        "tf1_basic",
        "garbage checkpoint file",
        ("folder",),
        "'checkpoint' file is not",
    ),
    "kernel_not_4_gates": ("tf1_odd", "", (), "kernel is (8, 30), an LSTM cell's kernel is (input + H, 4*H)"),
    "bias_wrong": ("tf1_odd_bias", "", (), "bias is (31,), the kernel needs (32,)"),
    "forget_bias_nan": ("tf1_basic", "", ("--forget-bias", "nan"), "--forget-bias must be a finite number"),
}

_ODD_TF1 = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf1 = tf.compat.v1
cell = "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/"
for name, kernel, bias in (("tf1_odd", (8, 30), (30,)), ("tf1_odd_bias", (13, 32), (31,))):
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            cell + "kernel": tf1.Variable(np.ones(kernel, "f4"), name="k"),
            cell + "bias": tf1.Variable(np.ones(bias, "f4"), name="b"),
        }
        saver = tf1.train.Saver(var_list=variables)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            saver.save(session, os.path.join(sys.argv[1], name, "model.ckpt"), write_meta_graph=False)
"""


def _tf1_case(sources: Path, folder: Path, base: str, action: str) -> Path:
    copy = folder / "ckpt"
    shutil.copytree(sources / base if (sources / base).is_dir() else folder.parent / base, copy)
    data = next(copy.glob("model.ckpt.data-*"))
    if action == "delete data":
        data.unlink()
    elif action == "truncate data":
        data.write_bytes(data.read_bytes()[:100])
    elif action == "garbage meta":
        (copy / "model.ckpt.meta").write_bytes(bytes(range(256)) * 4)
    elif action == "garbage checkpoint file":
        (copy / "checkpoint").write_bytes(b"\xff\xfe\x00garbage")
    return copy


@pytest.fixture(scope="module")
def batch(sources, tmp_path_factory) -> dict:
    """{case name: (result, the --out path)} for every Keras and TF1 case, run in one subprocess."""
    root = tmp_path_factory.mktemp("hostile")
    odd = subprocess.run([sys.executable, "-c", _ODD_TF1, str(root)], capture_output=True, text=True)
    assert odd.returncode == 0, odd.stderr[-3000:]
    names, argvs, outs = [], [], []
    for name, (make, _) in KERAS.items():
        folder = root / name
        folder.mkdir()
        names.append(name)
        outs.append(folder / "out.pt")
        argvs.append(["import", str(make(folder)), "--out", str(outs[-1])])
    for name, (base, action, flags, _) in TF1.items():
        folder = root / name
        folder.mkdir()
        copy = _tf1_case(sources, folder, base, action)
        source = copy if "folder" in flags else copy / "model.ckpt"
        names.append(name)
        outs.append(folder / "out.pt")
        argvs.append(["import", str(source), *[f for f in flags if f != "folder"], "--out", str(outs[-1])])
    return dict(zip(names, zip(run_batch(argvs), outs)))


@pytest.mark.parametrize("name", [*KERAS, *TF1])
def test_keras_and_tf1_refused(batch, name):
    result, out = batch[name]
    words = KERAS[name][1] if name in KERAS else TF1[name][3]
    _refused(result["code"], result["stderr"], words, out)
