"""The HTTP server: uvicorn's HTTP/1.1 protocol bounded for hostile clients (connection.py), bound
beside gRPC in the same process and event loop (listener.py), and the edge every route goes through
(edge.py): auth, admission, bounded bodies, one error mapping, metrics."""
