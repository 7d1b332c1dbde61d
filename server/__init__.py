"""The gRPC server: model repository, onnxruntime runtime, validation and servicers. No torch."""
