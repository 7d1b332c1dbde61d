"""`lstmserve infer` and `lstmserve demo`: thin layers over Client and Stream."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from lstmserve.errors import LstmServeError

from .state import State

DEFAULT_TARGET = "127.0.0.1:50051"


class InputFileError(LstmServeError, ValueError):
    """An --input file that cannot be read as a sequence."""


def add_infer(commands) -> None:
    parser = commands.add_parser(
        "infer",
        help="run a .npy sequence through a running server",
        description="Send (batch, time, features) or (time, features) from a .npy file (or with "
        "--time-major (time, batch, features)), whole or in "
        "chunks with the state carried between them, and print what the model says.",
    )
    parser.add_argument("--model", required=True, help="model name, e.g. digits")
    parser.add_argument("--version", type=int, default=0, help="model version (default: the newest)")
    parser.add_argument(
        "--input", required=True, help=".npy file: (batch, time, features) or (time, features)"
    )
    parser.add_argument("--chunk", type=int, help="send N steps per call, carrying the state (default: all)")
    parser.add_argument("--bidi", action="store_true", help="stream the chunks over one StreamInfer call")
    parser.add_argument(
        "--time-major",
        action="store_true",
        help="the .npy is (time, batch, features), as TF1's time_major=True; output and per-step "
        "logits are written time first too",
    )
    parser.add_argument("--output", help="write output, logits and the final state to this .npz")
    add_connection_flags(parser)
    parser.set_defaults(run=run_infer)


def add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="stream held-out digits row by row through a running server",
        description="Stream held-out handwritten digits (scikit-learn's, the seed-0 test split the default "
        "model never saw) row by row, showing the running prediction after each row.",
    )
    parser.add_argument("--model", default="digits", help="model name (default digits)")
    parser.add_argument("--count", type=int, default=3, help="how many digits (default 3)")
    parser.add_argument("--start", type=int, default=0, help="first held-out digit to show")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds between rows, to watch it think")
    parser.add_argument("--bidi", action="store_true", help="one StreamInfer call per digit")
    add_connection_flags(parser)
    parser.set_defaults(run=run_demo)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """--server, and TLS: the CA to trust, and the client's own certificate and key for mTLS."""
    parser.add_argument("--server", default=DEFAULT_TARGET, help=f"host:port (default {DEFAULT_TARGET})")
    parser.add_argument("--tls-ca", help="PEM CA that signed the server's certificate: speak TLS")
    parser.add_argument("--tls-cert", help="PEM client certificate, for a server that asks for one (mTLS)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-server-name",
        help="the name the server's certificate must carry, when --server's host is not one of its "
        "names (e.g. localhost for a certificate made for localhost, called at 127.0.0.1)",
    )
    parser.add_argument(
        "--token-file", help="file holding the bearer token a server with --auth-tokens asks for"
    )


def connect(args: argparse.Namespace):
    """A Client for the connection flags: plaintext, or TLS when any --tls-* flag is given."""
    from ._client import Client
    from .tls import tls_credentials

    credentials, options = None, []
    if args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        try:
            credentials = tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"TLS: {exc}") from None
    if args.tls_server_name:
        options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise InputFileError(f"--token-file: {exc}") from None
    return Client(args.server, credentials=credentials, token=token, options=options)


def run_infer(args: argparse.Namespace) -> int:
    x = load_sequence(Path(args.input), args.time_major)
    if args.chunk is not None and args.chunk < 1:
        raise InputFileError(f"--chunk must be at least 1, got {args.chunk}")
    step = args.chunk or max(x.shape[1], 1)
    with connect(args) as client, client.stream(args.model, args.version, bidi=args.bidi) as stream:
        info = client.model(args.model, args.version)
        outputs: list[np.ndarray] = []
        logits: list[np.ndarray] = []
        started = time.perf_counter()
        for start in range(0, x.shape[1], step):
            result = stream.feed(x[:, start : start + step])
            assert result.output is not None and result.state is not None  # all outputs were asked for
            outputs.append(result.output)
            if result.logits is not None:
                logits.append(result.logits)
        seconds = time.perf_counter() - started
    calls = len(outputs)
    print(
        f"{info.name} v{result.version}: {_count(x.shape[0], 'row')} x {_count(x.shape[1], 'step')} in "
        f"{_count(calls, 'call')} ({1e3 * seconds / calls:.2f} ms per call)"
    )
    output = np.concatenate(outputs, axis=1)
    final_logits = None
    if logits:
        # classify_last: the last chunk's logits are the sequence's; per_step: stitch the steps.
        final_logits = logits[-1] if info.head == "classify_last" else np.concatenate(logits, axis=1)
        last = final_logits if final_logits.ndim == 2 else final_logits[:, -1]
        for row, (label, probability) in enumerate(_top(last, info.labels)):
            print(
                f"row {row}: {label} (p={probability:.3f})"
                + ("" if final_logits.ndim == 2 else " at the last step")
            )
    else:
        print(f"output {list(output.shape)}; the model has no head")
    if args.output:
        assert result.state is not None
        _write_infer(args.output, output, final_logits, result.state, args.time_major)
    return 0


def _write_infer(
    path: str, output: np.ndarray, logits: np.ndarray | None, state: State, time_major: bool
) -> None:
    """`lstmserve infer --output`: the whole sequence's output and logits, and the final state."""
    if time_major:  # written as it was read: time first
        output = output.swapaxes(0, 1)
        logits = logits.swapaxes(0, 1) if logits is not None and logits.ndim == 3 else logits
    arrays: dict[str, Any] = {"output": output, "fingerprint": np.array(state.fingerprint)}
    if logits is not None:
        arrays["logits"] = logits
    for layer, (c, h) in enumerate(state.layers):
        arrays[f"final_c_{layer}"], arrays[f"final_h_{layer}"] = c, h
    try:
        np.savez(path, **arrays)
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror}") from None
    print(f"wrote {path}")


def run_demo(args: argparse.Namespace) -> int:
    digits, labels = _held_out_digits()
    if args.count < 1 or not 0 <= args.start < len(digits):
        raise InputFileError(f"--count must be at least 1 and --start in [0, {len(digits) - 1}]")
    chosen = range(args.start, min(args.start + args.count, len(digits)))
    how = (
        "one StreamInfer call, one message per row"
        if args.bidi
        else "one Infer call per row, state sent back"
    )
    correct, latencies = 0, []
    with connect(args) as client:
        info = client.model(args.model)
        if info.input_size != digits.shape[2] or info.head != "classify_last":
            raise InputFileError(
                f"the demo needs a classify_last model of 8 inputs; {info.name} has "
                f"{info.input_size} inputs and head {info.head}"
            )
        names = info.labels or tuple(str(i) for i in range(info.num_outputs))
        for index in chosen:
            print(f"\nheld-out digit #{index} (a {labels[index]}), {how}:")
            with client.stream(args.model, bidi=args.bidi) as stream:
                for row in range(digits.shape[1]):
                    started = time.perf_counter()
                    result = stream.feed(digits[index : index + 1, row : row + 1])  # (1, 1, 8)
                    latencies.append(time.perf_counter() - started)
                    assert result.logits is not None  # classify_last, checked above
                    ((label, probability),) = _top(result.logits, names)
                    print(f"  row {row + 1}  {_shade(digits[index, row])}  -> {_bar(label, probability)}")
                    time.sleep(args.delay)
            hit = label == str(labels[index])
            correct += hit
            print(f"  predicted {label}, true {labels[index]}: {'correct' if hit else 'wrong'}")
    print(
        f"\n{correct}/{len(chosen)} correct; {len(latencies)} rows streamed with the state carried, "
        f"p50 {1e3 * float(np.median(latencies)):.2f} ms per row"
    )
    return 0


def load_sequence(path: Path, time_major: bool = False) -> np.ndarray:
    """(batch, time, features) float32 from a .npy of that, of (time, features), or with time_major of
    (time, batch, features)."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    # numpy's own message would suggest allow_pickle: never for input files. EOFError: an empty file.
    except (ValueError, OSError, EOFError):
        raise InputFileError(f"{path}: not a readable .npy array file (np.save)") from None
    if not isinstance(x, np.ndarray) or x.ndim not in (2, 3):
        raise InputFileError(
            f"{path}: need (batch, time, features) or (time, features), got shape {getattr(x, 'shape', None)}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise InputFileError(f"{path}: need numbers, got {x.dtype}")
    if x.ndim == 2:
        return x[None].astype(np.float32)
    return (x.swapaxes(0, 1) if time_major else x).astype(np.float32)


def _held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    # scikit-learn (the [train] extra) is imported by load_dataset: missing, lstmserve/cli.py says so.
    from lstmserve.model.data import load_dataset, split

    data, _ = load_dataset("digits")
    test = split(data, None, seed=0).test  # what `lstmserve train` held out by default
    return test.inputs, test.targets


def _top(logits: np.ndarray, labels) -> list[tuple[str, float]]:
    """Per row, the most likely label and its softmax probability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    names = labels or [str(i) for i in range(logits.shape[1])]
    return [(names[i], float(probabilities[row, i])) for row, i in enumerate(best)]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _bar(label: str, probability: float) -> str:
    return f"{label} {'#' * round(20 * probability):<20} p={probability:.2f}"


def _shade(row: np.ndarray) -> str:
    """An 8-pixel row of intensities 0..1 as block characters, two per pixel."""
    ramp = " ░▒▓█"
    return "".join(ramp[min(int(value * len(ramp)), len(ramp) - 1)] * 2 for value in row)
