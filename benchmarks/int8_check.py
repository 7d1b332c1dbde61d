"""How an int8 model answers on this CPU's int8 kernels, as one JSON line, so that two CPUs compare:

    python -m lstmserve.benchmarks.int8_check FP32.onnx INT8.onnx --data test.npz
    valgrind --tool=none -q .venv/bin/python -m lstmserve.benchmarks.int8_check ...   # the AVX2 path

valgrind's CPU has AVX2 but no AVX-512 or VNNI, so on a VNNI machine the second line runs the
kernels a CPU without VNNI runs. `--data` is an .npz of `x` (batch, time, input_size) and `y`
(batch,) labels (`--write-data digits SEED FILE` writes the split `lstmserve train --seed` holds
out); without it, random inputs and no accuracy. Needs onnx, onnxruntime and numpy only (no torch),
so it also runs on an emulated ARM. docs/export.md#int8 has the figures it gave.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
import onnx

from lstmserve import contract, machine
from lstmserve.export.int8_bound import max_int8_weight, step_error_ratio
from lstmserve.export.sessions import run, session


def check(fp32: onnx.ModelProto, int8: onnx.ModelProto, x: np.ndarray, y: np.ndarray | None) -> dict:
    sess32, sess8 = session(fp32), session(int8)
    whole32, whole8 = run(sess32, _feed(sess32, x)), run(sess8, _feed(sess8, x))
    streamed = _row_by_row(sess8, x)
    result = {
        "int8_path": machine.int8_path(),
        "max_int8_weight": max_int8_weight(int8),
        "step_error_ratio": round(step_error_ratio(fp32, int8, np.random.default_rng(0), x), 4),
        "max_output_error": float(np.abs(whole8[contract.OUTPUT] - whole32[contract.OUTPUT]).max()),
        # bit for bit: equal digests on two CPUs mean equal answers
        "int8_digest": hashlib.sha256(
            b"".join(whole8[name].tobytes() for name in sorted(whole8))
        ).hexdigest()[:16],
    }
    if contract.LOGITS in whole32 and whole32[contract.LOGITS].ndim == 2:
        top32, top8 = whole32[contract.LOGITS].argmax(1), whole8[contract.LOGITS].argmax(1)
        result["max_logits_error"] = float(np.abs(whole8[contract.LOGITS] - whole32[contract.LOGITS]).max())
        result["agreement"] = float((top32 == top8).mean())  # the same prediction as fp32
        result["streamed_agreement"] = float((streamed[contract.LOGITS].argmax(1) == top8).mean())
        if y is not None:
            result["fp32_accuracy"], result["int8_accuracy"] = (
                float((top32 == y).mean()),
                float((top8 == y).mean()),
            )
    return result


def _feed(sess, x: np.ndarray, state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.full(len(x), x.shape[1], np.int32)}
    for value in sess.get_inputs()[2:]:
        feed[value.name] = state[value.name] if state else np.zeros((len(x), value.shape[1]), np.float32)
    return feed


def _row_by_row(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every sequence fed one step per call, the state fed back: each call quantizes only its step."""
    state = None
    for step in range(x.shape[1]):
        got = run(sess, _feed(sess, x[:, step : step + 1], state))
        state = {
            name.replace("final_", "initial_"): v for name, v in got.items() if name.startswith("final_")
        }
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstmserve.benchmarks.int8_check", description=__doc__)
    parser.add_argument("fp32", nargs="?", help="the fp32 model.onnx")
    parser.add_argument("int8", nargs="?", help="its int8 version's model.onnx")
    parser.add_argument("--data", help=".npz of x (batch, time, input_size) and y (batch,)")
    parser.add_argument(
        "--write-data", nargs=3, metavar=("DATASET", "SEED", "FILE"), help="write a test split"
    )
    args = parser.parse_args(argv)
    if args.write_data:
        from lstmserve.model.data import load_dataset, split  # needs scikit-learn: not on a serving box

        name, seed, path = args.write_data
        test = split(load_dataset(name)[0], None, seed=int(seed)).test
        np.savez(path, x=test.inputs, y=test.targets)
        return 0
    if not (args.fp32 and args.int8):
        parser.error("give FP32 and INT8 model files (or --write-data)")
    if args.data:
        data = np.load(args.data)
        x, y = data["x"].astype(np.float32), data["y"] if "y" in data else None
    else:
        features = session(onnx.load(args.fp32)).get_inputs()[0].shape[2]
        x, y = np.random.default_rng(0).standard_normal((64, 8, features), dtype=np.float32), None
    print(json.dumps(check(onnx.load(args.fp32), onnx.load(args.int8), x, y)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
