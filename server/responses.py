"""onnxruntime outputs and model metadata -> lstmserve.v1 messages."""

from __future__ import annotations

import numpy as np

from lstmserve import contract
from lstmserve.codec import LayerArrays, encode_state, encode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .repository import ModelRepository
from .runtime import ModelRuntime


def final_state(runtime: ModelRuntime, outputs: dict[str, np.ndarray]) -> LayerArrays:
    layers = range(runtime.info.config.num_layers)
    return [(outputs[contract.final_c(layer)], outputs[contract.final_h(layer)]) for layer in layers]


def infer_response(runtime: ModelRuntime, outputs: dict[str, np.ndarray]) -> pb.InferResponse:
    response = pb.InferResponse(
        model=runtime.info.name,
        version=runtime.info.version,
        output=encode_tensor(outputs[contract.OUTPUT]),
        state=encode_state(runtime.info.fingerprint, final_state(runtime, outputs)),
    )
    if contract.LOGITS in outputs:
        response.logits.CopyFrom(encode_tensor(outputs[contract.LOGITS]))
    return response


def model_info(runtime: ModelRuntime, repository: ModelRepository) -> pb.ModelInfo:
    info, config = runtime.info, runtime.info.config
    return pb.ModelInfo(
        name=info.name,
        version=info.version,
        versions=repository.versions(info.name),
        input_size=config.input_size,
        hidden_sizes=config.hidden_sizes,
        head=config.head,
        num_outputs=config.num_outputs,
        labels=config.labels,
        fingerprint=info.fingerprint,
        quantization=info.quantization,
        lstmserve_version=info.lstmserve_version,
    )
