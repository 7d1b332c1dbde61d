"""Source models made by the real frameworks, and `lstmserve import` run on them, once per session.

The frameworks run in subprocesses (sources.py, batch.py): TensorFlow, Keras and tf_keras stay out of
the test process, and each loads once for all cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# name -> flags after the source path; each is imported into one repository under its name.
GOOD = {
    "torch_tagger": ("torch_tagger.pt", "--head", "per_step"),
    "torch_stacked": ("torch_stacked.pt", "--prefix", "first", "second"),
    "torch_ordered": ("torch_ordered.pt", "--prefix", "zeta", "alpha"),
    "torch_module_list": ("torch_module_list.pt",),
    "torch_encoder": ("torch_seq2seq.pt", "--prefix", "encoder"),
    "keras_classifier": ("keras_classifier.keras",),
    "keras_tagger": ("keras_tagger.h5",),
    "keras2_plain": ("keras2_plain.h5",),
    "tf1_basic": (
        "tf1_basic/model.ckpt",
        "--head-kernel",
        "head/kernel",
        "--head-bias",
        "head/bias",
        "--head",
        "classify_last",
    ),
    "tf1_old_names": (
        "tf1_old_names/model.ckpt",
        "--head-kernel",
        "head/weights",
        "--head-bias",
        "head/biases",
        "--head",
        "classify_last",
        "--forget-bias",
        "1.0",
    ),
    "tf1_encoder": ("tf1_two_scopes/model.ckpt", "--scope", "encoder"),
    "tf1_single": (
        "tf1_single",
        "--head-kernel",
        "head/kernel",
        "--head-bias",
        "head/bias",
        "--head",
        "per_step",
    ),
}

# name -> (flags after the source path, words the one-line refusal must hold)
REFUSED = {
    "torch_gru": (("torch_gru.pt",), "is a GRU, not an LSTM"),
    "torch_bidirectional": (("torch_bidirectional.pt",), "is bidirectional"),
    "torch_proj": (("torch_proj.pt",), "has a projection (proj_size"),
    "torch_embedding": (("torch_embedding.pt",), "neither the LSTM nor its head: embed.weight"),
    "torch_head_unsaid": (("torch_tagger.pt",), "found an nn.Linear head at out: say how it is used"),
    "keras_gru": (("keras_gru.keras",), "is a GRU (GRU)"),
    "keras_bidirectional": (("keras_bidirectional.keras",), "is bidirectional (Bidirectional)"),
    "keras_go_backwards": (("keras_go_backwards.keras",), "has go_backwards=True"),
    "keras_relu": (("keras_relu.keras",), "uses activation 'relu': only tanh"),
    "keras_hard_sigmoid": (("keras_hard_sigmoid.keras",), "recurrent_activation 'hard_sigmoid'"),
    "keras_not_stacked": (("keras_not_stacked.keras",), "is a RepeatVector"),
    "keras_conv": (("keras_conv.keras",), "is a Conv1D"),
    "tf1_peepholes": (("tf1_peepholes/model.ckpt",), "w_o_diag has peepholes"),
    "tf1_proj": (("tf1_proj/model.ckpt",), "projection/kernel has a projection (num_proj)"),
    "tf1_clip": (("tf1_clip/model.ckpt",), "clips its cell state (cell_clip)"),
    "tf1_relu": (("tf1_relu/model.ckpt",), "uses a Relu op"),
    "tf1_gru": (("tf1_gru/model.ckpt",), "is a GRU cell"),
    "tf1_bidirectional": (("tf1_bidirectional/model.ckpt",), "is bidirectional"),
    "tf1_layer_norm": (("tf1_layer_norm/model.ckpt",), "is a layer-norm cell"),
    "tf1_missing_cell": (
        ("tf1_missing/model.ckpt",),
        "cell_1/basic_lstm_cell/kernel, the checkpoint does not",
    ),
    "tf1_missing_head": (
        ("tf1_basic/model.ckpt", "--head-kernel", "dense/kernel", "--head", "classify_last"),
        "no variable dense/kernel (missing variables)",
    ),
    "tf1_two_scopes": (("tf1_two_scopes/model.ckpt",), "LSTM cells under several scopes (decoder, encoder"),
    "tf1_head_without_kernel": (
        ("tf1_basic/model.ckpt", "--head", "per_step"),
        "--head per_step needs --head-kernel",
    ),
    "torch_seq2seq_whole": (("torch_seq2seq.pt",), "several nn.LSTMs ('encoder', 'decoder'): name the one"),
    "tf1_forget_bias": (("tf1_basic/model.ckpt", "--forget-bias", "0.5"), "--forget-bias 0.5, but the graph"),
}

# name -> flags after the source path: imported to a checkpoint only, for what the report says.
ONLY_CHECKPOINT = {"tf1_no_meta": ("tf1_clip_no_meta/model.ckpt", "--forget-bias", "1.0")}


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    done = subprocess.run(
        [sys.executable, str(HERE / "sources.py"), str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # A checkpoint without Saver's .meta file: the graph cannot be read, the weights still can.
    clip = folder / "tf1_clip_no_meta"
    clip.mkdir()
    for file in (folder / "tf1_clip").iterdir():
        if file.suffix != ".meta":
            (clip / file.name).write_bytes(file.read_bytes())
    return folder


def run_batch(argvs: list[list[str]]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(HERE / "batch.py")], input=json.dumps(argvs), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def imports(sources, tmp_path_factory) -> dict:
    """{case name: {"code", "stderr", "stdout"}}, and the repository the good ones went into."""
    repository = tmp_path_factory.mktemp("imported")
    out = tmp_path_factory.mktemp("checkpoints")
    names, argvs = [], []
    for name, (file, *flags) in GOOD.items():
        names.append(name)
        argvs.append(
            [
                "import",
                str(sources / file),
                *flags,
                "--name",
                name,
                "--repository",
                str(repository),
                "--out",
                str(out / f"{name}.pt"),
            ]
        )
    for name, ((file, *flags), _) in REFUSED.items():
        names.append(name)
        argvs.append(["import", str(sources / file), *flags, "--out", str(out / f"refused-{name}.pt")])
    for name, (file, *flags) in ONLY_CHECKPOINT.items():
        names.append(name)
        argvs.append(["import", str(sources / file), *flags, "--out", str(out / f"{name}.pt")])
    results = dict(zip(names, run_batch(argvs)))
    return {"results": results, "repository": repository, "checkpoints": out}
