"""The wire contract: .proto sources and the Python stubs proto/generate.py makes from them."""
