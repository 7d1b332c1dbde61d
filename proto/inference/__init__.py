"""KServe v2 / Open Inference Protocol stubs (package `inference`), generated from grpc_service.proto."""
