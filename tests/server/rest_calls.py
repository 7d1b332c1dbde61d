"""Calls to the REST (Open Inference Protocol) endpoints, written by hand with `requests` as any HTTP
client would: a JSON body, or Triton's binary tensor data extension (a JSON header, then the raw
tensors, its length in Inference-Header-Content-Length); and the answers read back into numpy.

JSON numbers are parsed as Python floats (doubles) and then rounded to float32, as a client in any
language would read them: that is what "float32 survives JSON" has to mean.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import requests

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}
SEALED = "sealed_state"


@dataclass
class Answer:
    """An infer response: its JSON (without the outputs' data) and each output by name: float32
    arrays, and sealed_state's bytes."""

    json: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.json["parameters"]["state_fingerprint"]

    def state(self) -> dict[str, np.ndarray]:
        """final_c_*/final_h_*, renamed as the next call's initial_c_*/initial_h_*."""
        return {
            name.replace("final_", "initial_"): value
            for name, value in self.arrays.items()
            if name.startswith("final_")
        }


def infer_body(
    tensors: dict[str, Any],
    binary: bool = False,
    fingerprint: str | None = None,
    outputs: list[str] | None = None,
    binary_outputs: bool | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A request's body and headers: numpy arrays (and sealed_state's bytes) by input name."""
    inputs, blobs = [], []
    for name, value in tensors.items():
        if name == SEALED:
            tensor: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [1]}
            raw = struct.pack("<I", len(value)) + value  # Triton's raw BYTES: a length, then the bytes
            json_data: Any = [base64.b64encode(value).decode()]
        else:
            tensor = {"name": name, "datatype": DATATYPES[value.dtype], "shape": list(value.shape)}
            raw, json_data = value.tobytes(), value.ravel().tolist()
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = json_data
        inputs.append(tensor)
    header: dict[str, Any] = {"inputs": inputs}
    if fingerprint is not None:
        header["parameters"] = {"state_fingerprint": fingerprint}
    if binary_outputs is not None:
        header.setdefault("parameters", {})["binary_data_output"] = binary_outputs
    if outputs is not None:
        header["outputs"] = [{"name": name} for name in outputs]
    json = orjson.dumps(header)
    if not binary:
        return json, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(json))}
    return json + b"".join(blobs), headers


def json_inputs(tensors: dict[str, Any]) -> list[dict[str, Any]]:
    """Tensors as a request's "inputs", their data inline (as generate_stream takes its prompt)."""
    return orjson.loads(infer_body(tensors)[0])["inputs"]


def post_infer(
    session: requests.Session,
    url: str,
    model: str,
    tensors: dict[str, Any],
    version: str = "",
    binary: bool = False,
    fingerprint: str | None = None,
    outputs: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """POST .../infer; binary: the inputs and the outputs both as binary tensor data."""
    body, sent = infer_body(tensors, binary, fingerprint, outputs, binary if binary else None)
    return session.post(
        f"{url}{model_path(model, version)}/infer", data=body, headers={**sent, **(headers or {})}, timeout=20
    )


def infer(session: requests.Session, url: str, model: str, tensors: dict[str, Any], **options) -> Answer:
    """post_infer that must succeed, read back."""
    response = post_infer(session, url, model, tensors, **options)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return read_answer(response)


def read_answer(response: requests.Response) -> Answer:
    body = response.content
    length = response.headers.get(HEADER_LENGTH)
    split = int(length) if length is not None else len(body)
    header = orjson.loads(body[:split]) if length is not None else response.json()  # json: doubles
    answer, offset = Answer(header), split
    for tensor in header["outputs"]:
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is not None:
            raw, offset = body[offset : offset + size], offset + size
            if tensor["datatype"] == "BYTES":
                assert struct.unpack_from("<I", raw)[0] == len(raw) - 4
                answer.arrays[tensor["name"]] = raw[4:]
            else:
                answer.arrays[tensor["name"]] = np.frombuffer(raw, "<f4").reshape(tensor["shape"])
        elif tensor["datatype"] == "BYTES":
            answer.arrays[tensor["name"]] = base64.b64decode(tensor.pop("data")[0])
        else:
            answer.arrays[tensor["name"]] = np.array(tensor.pop("data"), np.float32).reshape(tensor["shape"])
    assert offset == len(body), "bytes left after the outputs' binary data"
    return answer


def session(verify: str | bool = True, cert: tuple[str, str] | None = None) -> requests.Session:
    """A session that ignores the environment: REQUESTS_CA_BUNDLE would replace `verify`, and a proxy
    variable would send loopback calls elsewhere."""
    made = requests.Session()
    made.trust_env, made.verify, made.cert = False, verify, cert
    return made


def model_path(model: str, version: str = "") -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")


def bits(array: np.ndarray) -> np.ndarray:
    """A float32 array's bits: equal bits, not merely equal values (-0.0 is not 0.0)."""
    return np.ascontiguousarray(array, np.float32).view(np.uint32)
