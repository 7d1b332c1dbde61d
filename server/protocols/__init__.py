"""The two wire protocols, each an adapter (decode and encode side by side) and a thin service.

    v1.py, v1_service.py           lstmserve.v1.LSTMService (Infer, StreamInfer, ListModels, GetModel)
    kserve.py, kserve_service.py   inference.GRPCInferenceService (KServe v2 / Open Inference Protocol)

A request goes: decode (here) -> validation.py -> batcher.py -> runtime.py -> encode (here).
"""
