"""Hypothesis strategies for hostile HTTP: Open Inference Protocol requests (JSON, and JSON with binary
tensors) spoilt a few fields at a time, and raw bytes for every route (test_http_fuzz.py sends them).

As wire_strategies.py does for gRPC, requests start from one the server would answer and spoil some
of its parts, so that examples reach every check and onnxruntime itself, not only the first refusal.
Sizes stay small or are drawn from a few numbers, so that an example costs milliseconds.
"""

from __future__ import annotations

import json
import struct
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from .http_hostile import CHARS, TEXT
from .wire_strategies import mostly

# input_size, hidden_sizes of each model of http_hostile.hostile_repository
MODELS = {CHARS: (5, (12, 7)), TEXT: (4, (8,))}
DATATYPES = ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
OUTPUTS = ["output", "logits", "final_c_0", "final_h_0", "final_c_1", "final_h_1", "sealed_state"]
WORDS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\n", "\u0000", "../../etc/passwd"]),
    st.sampled_from([("\u20ac", 40_000), ("x", 200_000)]).map(lambda pair: pair[0] * pair[1]),  # long
)
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 0.5, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 1e38, 3.5e38, -1e308, 5e-324]),
    st.integers(-(2**64) + 1, 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
# Any JSON value, a few levels deep: what a field gets in place of the right one.
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, WORDS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
DIMS = st.one_of(st.integers(0, 9), st.sampled_from([-1, 1024, 1025, 16384, 16385, 2**31, 2**62, 2**64 - 1]))
ROW_STEPS = mostly(
    st.sampled_from([(1, 1), (1, 3), (2, 2)]), st.sampled_from([(0, 3), (1, 0), (2, 4000), (64, 2)])
)


def spoilt(draw, value: Any, odds: int = 8) -> Any:
    """`value`, or (one time in `odds`) any JSON value instead."""
    return draw(mostly(st.just(value), JSON, odds=odds))


@st.composite
def data_for(draw, count: int, shape: list[int]) -> Any:
    """Values for `count` elements: numbers flat or nested as `shape`, or a few spoilt ones."""
    value = draw(mostly(st.sampled_from([0.5, 1, 0]), NUMBERS, odds=4))
    flat = [value] * count
    if flat and draw(mostly(st.just(False), st.just(True), odds=3)):
        flat[draw(st.integers(0, count - 1))] = draw(JSON)
    cut = draw(mostly(st.just(0), st.integers(-2, 2)))
    flat = flat[: len(flat) + cut] if cut < 0 else flat + flat[:1] * cut
    if len(shape) == 3 and count and draw(st.booleans()) and len(flat) == count:
        rows, steps, size = shape
        return [
            [flat[(r * steps + t) * size : (r * steps + t + 1) * size] for t in range(steps)]
            for r in range(rows)
        ]
    return flat


@st.composite
def tensors(
    draw, name: str, datatype: str, shape: list[int], binary: list[bytes], binary_ok: bool = True
) -> dict[str, Any]:
    """One input tensor, its data as JSON or (appended to `binary`; rarely unless `binary_ok`) as
    raw bytes."""
    shape = draw(mostly(st.just(shape), st.lists(DIMS, max_size=5)))
    tensor: dict[str, Any] = {
        "name": draw(
            mostly(st.just(name), st.one_of(st.sampled_from(OUTPUTS + ["input", "initial_c_2"]), WORDS))
        ),
        "datatype": draw(mostly(st.just(datatype), st.one_of(st.sampled_from(DATATYPES), WORDS))),
        "shape": spoilt(draw, shape),
    }
    count = 1
    for dim in shape:
        count *= dim
    count = count if 0 <= count <= 1 << 15 else 3
    if draw(st.booleans() if binary_ok else mostly(st.just(False), st.just(True))):
        size = 4 if datatype == "FP32" else 8
        raw = struct.pack(f"<{count}f", *[0.5] * count) if size == 4 else bytes(count * size)
        raw = raw[: draw(mostly(st.just(len(raw)), st.integers(0, len(raw) + 8)))]
        binary.append(raw)
        tensor["parameters"] = {"binary_data_size": spoilt(draw, len(raw))}
    else:
        tensor["data"] = spoilt(draw, draw(data_for(count, shape)))
    return tensor


@st.composite
def oip_requests(draw, generate: bool = False) -> tuple[str, dict[str, str], bytes]:
    """A target, headers and body: an infer (or generate_stream) request, some of its parts spoilt."""
    usual = st.just(TEXT) if generate else st.sampled_from(sorted(MODELS))  # chars cannot generate
    model = draw(mostly(usual, st.one_of(st.sampled_from(sorted(MODELS)), WORDS)))
    size, hidden = MODELS.get(model, MODELS[CHARS])
    version = draw(
        mostly(st.sampled_from(["", "1"]), st.sampled_from(["0", "2", "-1", "01", "9" * 30, "%2e%2e"]))
    )
    target = f"/v2/models/{quote(model, safe='')}" + (f"/versions/{version}" if version else "")
    target += "/generate_stream" if generate else "/infer"
    rows, steps = draw(ROW_STEPS)
    binary: list[bytes] = []
    inputs = [draw(tensors("input", "FP32", [rows, steps, size], binary))]
    if draw(st.booleans()):
        inputs.append(
            draw(tensors("sequence_lengths", draw(st.sampled_from(["INT32", "INT64"])), [rows], binary))
        )
    if draw(mostly(st.just(False), st.just(True), odds=3)):
        for layer, width in enumerate(hidden):
            for part in "ch":
                inputs.append(draw(tensors(f"initial_{part}_{layer}", "FP32", [rows, width], binary)))
    body: dict[str, Any] = {"inputs": spoilt(draw, inputs, odds=12)}
    if generate:
        if draw(st.booleans()):
            body = {"text_input": spoilt(draw, draw(st.text("abcd", min_size=1, max_size=40)))}
        parameters = {
            "max_steps": draw(
                mostly(st.sampled_from([1, 3]), st.sampled_from([0, -1, 4096, 4097, 2**63, 1.5]))
            ),
            "temperature": draw(mostly(st.sampled_from([0, 0.8]), NUMBERS)),
            "top_k": draw(mostly(st.just(0), NUMBERS)),
            "seed": draw(mostly(st.just(7), NUMBERS)),
            "feedback": draw(mostly(st.just("choice"), WORDS)),
            "stop_classes": draw(mostly(st.just([]), JSON)),
            "stop": draw(mostly(st.just("d"), WORDS)),
        }
        optional = {key: value for key, value in parameters.items() if draw(st.booleans())}
        body["parameters"] = {"max_steps": parameters["max_steps"], **optional}
        binary.clear()  # JSON alone: a binary_data_size finds no bytes to cover
    else:
        outputs = st.lists(
            st.fixed_dictionaries(
                {"name": mostly(st.sampled_from(OUTPUTS), WORDS)},
                optional={"parameters": mostly(st.fixed_dictionaries({"binary_data": st.booleans()}), JSON)},
            ),
            max_size=4,
        )
        body["outputs"] = draw(outputs)
        body["parameters"] = draw(
            mostly(
                st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()}),
                st.dictionaries(
                    st.sampled_from(["state_fingerprint", "sequence_id", "binary_data_output"]), JSON
                ),
            )
        )
        if draw(st.booleans()):
            body["id"] = spoilt(draw, draw(WORDS))
    for key in draw(mostly(st.just([]), st.lists(st.sampled_from(sorted(body)), max_size=2))):
        body.pop(key, None)
    header = json.dumps(body).encode()
    headers = {
        "Content-Type": draw(
            mostly(st.just("application/json"), WORDS.map(lambda w: w.encode("unicode_escape").decode()))
        )
    }
    if binary or draw(mostly(st.just(False), st.just(True))):
        length = draw(
            mostly(
                st.just(str(len(header))),
                st.sampled_from(["", "-1", "0", "x", str(len(header) + 1), "9" * 20]),
            )
        )
        headers["Inference-Header-Content-Length"] = length
    return target, headers, header + b"".join(binary)


# --- raw bytes ------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", f"/v2/models/{CHARS}"),
    ("GET", f"/v2/models/{CHARS}/versions/1"),
    ("GET", f"/v2/models/{CHARS}/ready"),
    ("POST", f"/v2/models/{CHARS}/infer"),
    ("POST", f"/v2/models/{TEXT}/generate_stream"),
]
TOKENS = [b"GET", b"POST", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b":", b"%", b"\x00", b"\xff",
          b"Content-Length: ", b"Transfer-Encoding: chunked", b"Expect: 100-continue", b"Connection: upgrade",
          b"Upgrade: h2c", b"0\r\n\r\n", b"5", b"-1", b"{", b"}", b"[", b"]", b'"inputs"']  # fmt: skip


@st.composite
def raw_requests(draw) -> bytes:
    """A route's request with its bytes spoilt, or made of HTTP's own words at random, or any bytes."""
    method, target = draw(st.sampled_from(ROUTES))
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 5], "data": [1, 1, 1, 1, 1]}]}'
    if "generate" in target:
        body = b'{"text_input": "ab", "parameters": {"max_steps": 2}}'
    if method == "GET":
        body = b""
    good = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    kind = draw(st.sampled_from(["cut", "flipped", "inserted", "words", "bytes"]))
    if kind == "cut":
        return good[: draw(st.integers(0, len(good)))]
    if kind == "flipped":
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "inserted":
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.one_of(st.binary(max_size=32), st.sampled_from(TOKENS))) + good[at:]
    if kind == "words":
        return b"".join(draw(st.lists(st.sampled_from(TOKENS), max_size=24)))
    return draw(st.binary(max_size=300))
