"""`lstmserve import` on real TF1, Keras and PyTorch models: checked against the framework, refused
where the model does not map, and served: a stream equals the framework's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import GOOD, REFUSED


@pytest.mark.parametrize("name", GOOD)
def test_imports_checked_against_the_framework(imports, name):
    result = imports["results"][name]
    assert result["code"] == 0, result["stderr"][-2000:]
    checked = [line for line in result["stderr"].splitlines() if line.startswith("checked:")]
    assert checked and "against the source framework passed" in checked[0]
    assert f"{name} version 1:" in result["stdout"]
    assert (imports["checkpoints"] / f"{name}.pt").is_file()


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_the_reason(imports, name):
    result = imports["results"][name]
    words = REFUSED[name][1]
    assert result["code"] == 2, result["stderr"][-2000:]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("lstmserve import: error:")]
    assert len(errors) == 1, result["stderr"][-2000:]
    assert words in errors[0]
    assert not (imports["checkpoints"] / f"refused-{name}.pt").exists()  # nothing written


def test_without_meta_the_weights_import_and_the_report_says_what_was_not_checked(imports):
    # tf1_clip_no_meta: cell_clip is invisible without the graph; the check compares against a TF graph
    # built without it, so the import goes through, and says so.
    result = imports["results"]["tf1_no_meta"]
    assert result["code"] == 0, result["stderr"][-2000:]
    assert (
        "no model.ckpt.meta: forget_bias 1 from --forget-bias; cell_clip and activation not checked"
        in (result["stderr"])
    )


@pytest.fixture(scope="module")
def served(imports):
    from lstmserve.client import Client
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    running = InProcessServer(Settings(repository=str(imports["repository"]))).start()
    try:
        with Client(running.address, timeout=30) as client:
            yield client
    finally:
        running.stop()


@pytest.mark.parametrize("name", GOOD)
def test_streamed_in_chunks_equals_the_framework(served, sources, name):
    expected = np.load(sources / "expected" / f"{name}.npz")
    x = expected["x"]
    stream = served.stream(name)
    outputs, logits, result = [], [], None
    for start, stop in ((0, 3), (3, 7), (7, 10)):  # the state carried by the client between calls
        result = stream.feed(x[:, start:stop])
        outputs.append(result.output)
        logits.append(result.logits)
    ours = {"output": np.concatenate(outputs, axis=1), "final_h": np.concatenate(outputs, axis=1)[:, -1]}
    if result.logits is not None:
        ours["logits"] = np.concatenate(logits, axis=1) if result.logits.ndim == 3 else result.logits
        shifted = np.exp(ours["logits"] - ours["logits"].max(-1, keepdims=True))
        ours["probabilities"] = shifted / shifted.sum(-1, keepdims=True)
    compared = [key for key in expected.files if key != "x"]
    assert compared
    for key in compared:
        gap = np.abs(ours[key] - expected[key]) / (1 + np.abs(expected[key]))
        assert gap.max() <= 1e-5, f"{name} {key}: {gap.max():.2e}"


def test_detects_the_framework_from_the_file(sources, tmp_path):
    from lstmserve.imports.errors import ImportRefused
    from lstmserve.imports.read import detect

    assert detect(sources / "tf1_basic" / "model.ckpt") == "tf1"
    assert detect(sources / "tf1_basic") == "tf1"
    assert detect(sources / "keras_classifier.keras") == "keras"
    assert detect(sources / "keras_tagger.h5") == "keras"
    assert detect(sources / "torch_tagger.pt") == "torch"
    stranger = tmp_path / "model.bin"
    stranger.write_bytes(b"\x00" * 64)
    with pytest.raises(ImportRefused, match="cannot tell which framework"):
        detect(stranger)
    with pytest.raises(ImportRefused, match="no such file"):
        detect(tmp_path / "absent.pt")


@pytest.mark.parametrize(
    ("file", "flags", "words"),
    [
        ("torch_tagger.pt", ("--from", "keras"), "not a Keras file"),
        (
            "keras_classifier.keras",
            ("--from", "torch"),
            "not a state_dict that torch.load(weights_only=True)",
        ),
        ("torch_tagger.pt", ("--scope", "rnn"), "--scope does not apply to a torch model"),
        ("torch_tagger.pt", ("--head-kernel", "k"), "--head-kernel needs --head"),
        (
            "torch_stacked.pt",
            ("--prefix", "third"),
            "no LSTM weights under --prefix 'third'; found 'first', 'second'",
        ),
        ("keras_classifier.keras", ("--head", "per_step"), "--head does not apply to a keras model"),
    ],
)
def test_wrong_framework_and_wrong_flags_are_refused(sources, tmp_path, capsys, file, flags, words):
    from lstmserve.cli import main

    assert main(["import", str(sources / file), *flags, "--out", str(tmp_path / "x.pt")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_nowhere_to_write_is_refused(sources, capsys):
    from lstmserve.cli import main

    assert main(["import", str(sources / "torch_tagger.pt"), "--head", "per_step"]) == 2
    assert "say where it goes: --out" in capsys.readouterr().err
