"""One gRPC call over raw HTTP/2 (the `h2` package), with header bytes no gRPC client would send."""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events


def raw_call(port: int, path: str, extra_headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, str]:
    """The response's headers and trailers (grpc-status among them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        connection = h2.connection.H2Connection(config=config)
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *extra_headers,
        ]
        connection.send_headers(stream, headers)
        connection.send_data(stream, b"\x00" + struct.pack(">I", len(body)) + body, end_stream=True)
        sock.sendall(connection.data_to_send())
        got: dict[str, str] = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return got
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    got.update((key.decode(), value.decode(errors="replace")) for key, value in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    return got
            sock.sendall(connection.data_to_send())
