"""What a tritonclient user would do against lstmserve, run as its own process by test_tritonclient.py.

tritonclient compiles its own `inference.*` protobuf messages into the default descriptor pool, as
lstmserve's server does; one process cannot hold both (protobuf refuses the duplicate symbols), so
the third-party client runs here and hands back what it saw: arrays in an .npz, the rest as JSON.

    python tritonclient_session.py ADDRESS MODEL CHUNKS.npz OUT_FOLDER

CHUNKS.npz holds `x`, a (batch, time, input_size) sequence, and `cuts`, where to chunk it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def infer(client, model, x, state=None, fingerprint=None, outputs=None):
    inputs = [triton.InferInput("input", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    for name, value in (state or {}).items():
        tensor = triton.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    parameters = {"state_fingerprint": fingerprint} if fingerprint else None
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    return client.infer(model, inputs, outputs=requested, parameters=parameters, request_id="r-1")


def next_state(result, layers: int) -> tuple[dict[str, np.ndarray], str]:
    """final_c_l/final_h_l become the next call's initial_c_l/initial_h_l, with the fingerprint."""
    state = {}
    for layer in range(layers):
        state[f"initial_c_{layer}"] = result.as_numpy(f"final_c_{layer}")
        state[f"initial_h_{layer}"] = result.as_numpy(f"final_h_{layer}")
    fingerprint = result.get_response().parameters["state_fingerprint"].string_param
    return state, fingerprint


def error_of(call) -> dict:
    try:
        call()
    except InferenceServerException as exc:
        return {"status": exc.status(), "message": exc.message()}
    return {"status": "OK", "message": ""}


def main(address: str, model: str, chunks: Path, out: Path) -> None:
    data = np.load(chunks)
    x, cuts = data["x"], [int(cut) for cut in data["cuts"]]
    seen: dict = {}
    arrays: dict[str, np.ndarray] = {}
    with triton.InferenceServerClient(address) as client:
        seen["live"] = client.is_server_live()
        seen["ready"] = client.is_server_ready()
        seen["model_ready"] = client.is_model_ready(model)
        seen["unknown_model_ready"] = client.is_model_ready("no-such-model")
        seen["server_metadata"] = client.get_server_metadata(as_json=True)
        metadata = client.get_model_metadata(model, as_json=True)
        seen["model_metadata"] = metadata
        layers = sum(1 for tensor in metadata["outputs"] if tensor["name"].startswith("final_c_"))

        whole = infer(client, model, x)
        seen["whole_id"] = whole.get_response().id
        seen["whole_outputs"] = [output.name for output in whole.get_response().outputs]
        for name in seen["whole_outputs"]:
            arrays[f"whole/{name}"] = whole.as_numpy(name)

        # Chunk by chunk, the state each call returned fed back into the next.
        state, fingerprint, pieces = None, None, []
        for start, stop in zip([0, *cuts], [*cuts, x.shape[1]]):
            result = infer(client, model, x[:, start:stop], state, fingerprint)
            pieces.append(result.as_numpy("output"))
            state, fingerprint = next_state(result, layers)
        arrays["chunked/output"] = np.concatenate(pieces, axis=1)
        arrays["chunked/logits"] = result.as_numpy("logits")
        for name, value in state.items():
            arrays[f"chunked/{name}"] = value
        seen["fingerprint"] = fingerprint

        only = infer(client, model, x, outputs=["logits"])
        seen["only_logits_outputs"] = [output.name for output in only.get_response().outputs]

        seen["errors"] = {
            "unknown model": error_of(lambda: infer(client, "no-such-model", x)),
            "state without fingerprint": error_of(lambda: infer(client, model, x, state)),
            "state from a made-up model": error_of(
                lambda: infer(client, model, x, state, "0123456789abcdef")
            ),
            "sequence_id": error_of(
                lambda: client.infer(model, _fp32_input(x), sequence_id=7, sequence_start=True)
            ),
        }
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "arrays.npz", **arrays)
    (out / "seen.json").write_text(json.dumps(seen, indent=1))


def _fp32_input(x):
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
