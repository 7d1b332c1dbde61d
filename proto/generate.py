"""Regenerate the Python stubs (with .pyi) from the .proto sources; `--check` fails if they are stale.

Generated files are never edited by hand. The one rewrite here is protoc's absolute import of a
sibling module (`from lstmserve.v1 import x_pb2`), which becomes relative so the stubs live inside
the `lstmserve.proto` package.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = sorted(HERE.rglob("*.proto"))
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    for source in SOURCES:
        args = [
            "protoc",
            f"-I{HERE}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(source),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {source}")
    written = sorted(path for path in out.rglob("*") if path.name.endswith(GENERATED))
    for path in written:
        text = path.read_text()
        # "from lstmserve.v1 import lstmserve_pb2 as ..." -> "from . import lstmserve_pb2 as ..."
        text = re.sub(r"^from [\w.]+ import (\w+_pb2)", r"from . import \1", text, flags=re.M)
        path.write_text(text)
    return [path.relative_to(out) for path in written]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        stale = []
        for relative in generate(out):
            target = HERE / relative
            if args.check:
                if not target.exists() or not filecmp.cmp(out / relative, target, shallow=False):
                    stale.append(str(relative))
            else:
                shutil.copyfile(out / relative, target)
                print(f"wrote proto/{relative}")
    if stale:
        print(f"stale generated stubs: {', '.join(stale)}; run `python proto/generate.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
