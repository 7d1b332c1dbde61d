"""Run many `lstmserve ...` command lines in one process (TensorFlow and Keras load once, not per
case): JSON list of argv on stdin -> JSON list of {"code", "stderr", "stdout"} on stdout."""

from __future__ import annotations

import contextlib
import io
import json
import sys

from lstmserve.cli import main

if __name__ == "__main__":
    results = []
    for argv in json.load(sys.stdin):
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
        results.append({"code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
    json.dump(results, sys.__stdout__)
