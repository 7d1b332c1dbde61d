"""lstmserve: serve stateful LSTM stacks over gRPC with client-held state."""

__version__ = "0.1.0"
