"""The repository layout: one rule for names and version folders, for the exporter, server and bench."""

import subprocess
import sys

import pytest

from lstmserve import layout
from lstmserve.layout import MODEL_FILE, LayoutError


@pytest.mark.parametrize(
    ("folder", "version"),
    [
        ("1", 1),
        ("10", 10),
        ("999999999999999999", 10**18 - 1),  # 18 digits: the most lstmserve.v1's int64 is given
        ("0", None),  # versions start at 1; 0 means "the newest" on the wire
        ("01", None),  # not as str(1) writes it: "01" beside "1" would be two files for version 1
        ("00", None),
        ("²", None),  # str.isdigit() says yes
        ("٣", None),  # Arabic-Indic three: int() would read it
        ("1000000000000000000", None),  # 19 digits
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        (" 1", None),
        ("1\n", None),
        ("", None),
        (".1.tmp", None),  # an export's staging folder
    ],
)
def test_version_folders(folder, version):
    assert layout.version_of(folder) == version


@pytest.mark.parametrize("name", ["digits", "lstm2x128", "a", "A.b-c_d", "9", "x" * 64])
def test_model_names_allowed(name):
    assert layout.check_name(name) == name and layout.is_model_name(name)


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "_x", "-x", "a b", "x" * 65, "é", "x\n", "a/b"])
def test_model_names_refused(name):
    assert not layout.is_model_name(name)
    with pytest.raises(LayoutError, match=r"model name .* must be 1-64 letters"):
        layout.check_name(name)


def make(root, *parts, file=True):
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    if file:
        (folder / MODEL_FILE).write_bytes(b"")


def test_versions_are_the_version_folders_oldest_first(tmp_path):
    for folder in ("2", "10", "1", "0", "01", "²", "1.0", "latest", ".3.tmp"):
        make(tmp_path, "m", folder)
    make(tmp_path, "m", "4", file=False)  # a folder whose file is not there yet is still taken
    (tmp_path / "m" / "5").write_bytes(b"")  # a file named like a version is not a folder
    assert layout.versions(tmp_path, "m") == [1, 2, 4, 10]
    assert layout.versions(tmp_path, "absent") == []
    with pytest.raises(LayoutError):
        layout.versions(tmp_path, "../m")


def test_model_path(tmp_path):
    assert layout.model_path(tmp_path, "digits", 3) == tmp_path / "digits" / "3" / MODEL_FILE
    for version in (0, -1, 10**18):
        with pytest.raises(LayoutError, match="version must be a positive integer"):
            layout.model_path(tmp_path, "digits", version)
    with pytest.raises(LayoutError, match="model name '..' must be"):
        layout.model_path(tmp_path, "..", 1)


def test_scan_finds_every_model_file_by_name_then_version(tmp_path):
    for name, folder in [("b", "10"), ("b", "2"), ("a", "1"), ("b", "0"), ("b", "02"), ("_x", "1")]:
        make(tmp_path, name, folder)
    make(tmp_path, "a", "2", file=False)
    (tmp_path / "stray.onnx").write_bytes(b"")
    assert list(layout.scan(tmp_path)) == [
        ("a", 1, tmp_path / "a" / "1" / MODEL_FILE),
        ("b", 2, tmp_path / "b" / "2" / MODEL_FILE),
        ("b", 10, tmp_path / "b" / "10" / MODEL_FILE),
    ]


def test_imports_stay_light():
    heavy = ("onnx", "onnxruntime", "torch", "grpc")
    code = f"import sys, lstmserve.layout; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_misplaced_names_the_model_files_scan_skips(tmp_path):
    for folder in ("good/1", "good/01", "bad name/2", "good/0"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / layout.MODEL_FILE).write_bytes(b"")
    assert [name for name, _, _ in layout.scan(tmp_path)] == ["good"]
    misplaced = [str(path.relative_to(tmp_path).parent) for path in layout.misplaced(tmp_path)]
    assert misplaced == ["bad name/2", "good/0", "good/01"]


def test_one_model_is_its_version_folders_or_a_bare_file(tmp_path):
    """With a model name (--model-name), the root is that model: VERSION/model.onnx under it, and a
    bare model.onnx is version 1 unless a folder 1/ is there too."""
    for folder in ("2", "10", "01", "latest"):
        make(tmp_path, folder)
    make(tmp_path, "other", "3")  # a repository's NAME/VERSION: not this model's
    (tmp_path / MODEL_FILE).write_bytes(b"")
    assert list(layout.scan(tmp_path, "m")) == [
        ("m", 1, tmp_path / MODEL_FILE),
        ("m", 2, tmp_path / "2" / MODEL_FILE),
        ("m", 10, tmp_path / "10" / MODEL_FILE),
    ]
    assert layout.misplaced(tmp_path, "m") == [tmp_path / "01" / MODEL_FILE, tmp_path / "latest" / MODEL_FILE]
    make(tmp_path, "1")
    assert list(layout.scan(tmp_path, "m"))[0] == ("m", 1, tmp_path / "1" / MODEL_FILE)
    assert tmp_path / MODEL_FILE in layout.misplaced(tmp_path, "m")  # shadowed by 1/, and said so
    with pytest.raises(LayoutError):
        list(layout.scan(tmp_path, "../m"))


@pytest.mark.parametrize(
    ("files", "repository", "one_model"),
    [
        ([], False, False),
        (["m/1"], True, False),
        (["1"], False, True),
        ([""], False, True),  # a bare model.onnx
        (["m/1", "1"], True, True),
        (["m/01", "01"], False, False),  # only folders the rules skip
    ],
)
def test_which_layout_a_root_holds(tmp_path, files, repository, one_model):
    for folder in files:
        make(tmp_path, *filter(None, folder.split("/")))
    assert layout.holds_repository(tmp_path) is repository
    assert layout.holds_one_model(tmp_path) is one_model
