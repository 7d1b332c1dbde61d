"""The two wire protocols, each adapters (decode and encode side by side) and a thin service.

    v1.py, v1_service.py           lstmserve.v1.LSTMService (Infer, StreamInfer, Generate, ListModels,
                                   GetModel)
    kserve.py, kserve_service.py   inference.GRPCInferenceService (KServe v2 / Open Inference Protocol)

An inference request goes: the adapter's decode (here) -> ../dataplane.py (validation, limits,
batcher, runtime) -> the same adapter's encode (here). Nothing below the adapters knows a wire.
"""
