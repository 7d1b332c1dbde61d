"""Two replicas behind Debian's nginx balancing every gRPC call: no sticky routing, no lost stream."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from lstmserve.client import Client

from ..conftest import CHARS
from ..servers import ServerProcess, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it with apt-get)"
)


class Nginx:
    """nginx in the foreground with a config of our own: per-call round robin over the replicas."""

    def __init__(self, folder: Path, backends: list[int], next_upstream: bool = True):
        self.port, self.folder = free_port(), folder
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in backends)
        temp = " ".join(
            f"{kind}_temp_path {folder}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (folder / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {temp}
    log_format upstream '$upstream_addr $status';
    access_log {folder}/access.log upstream;
    upstream replicas {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port} http2;
        location / {{
            grpc_pass grpc://replicas;
            grpc_next_upstream {"error timeout" if next_upstream else "off"};
            error_page 502 503 504 = @unavailable;
        }}
        # NOTE: nginx's own 502 is an HTML page: headers, then a body. gRPC commits a call (no more
        # retries) once it reads a response's headers before its end, so whether the client retried
        # was a race between two frames: 12 of 40 calls to a dead replica stopped short of their 5
        # tries, 3 after one. UNAVAILABLE as gRPC's Trailers-Only answer (one HEADERS frame, ending
        # the stream; a 204 has no body) is retried every time.
        location @unavailable {{
            add_header grpc-status 14 always;
            add_header grpc-message "nginx: no replica answered" always;
            return 204;
        }}
    }}
}}
""")
        self.process = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")], stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def upstreams(self, answered: int) -> list[list[str]]:
        """Per call, the replicas nginx tried, in order ("A, B" when A refused and B answered), once
        `answered` calls are logged as answered. nginx logs a call after sending its answer, so the
        client may hold the answer before the line is written (1 run in 20 read the log too soon,
        on a loaded 2-core machine)."""
        deadline = time.monotonic() + 10
        while True:
            lines = (self.folder / "access.log").read_text().splitlines()
            if sum(line.endswith(" 200") for line in lines) >= answered:
                return [line.rsplit(" ", 1)[0].split(", ") for line in lines]
            assert time.monotonic() < deadline, lines
            time.sleep(0.01)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(params=[True, False], ids=["nginx retries", "client retries"])
def replicas(repository, tmp_path, request):
    """Two replicas behind nginx; with grpc_next_upstream off, a call sent to a dead replica comes back
    UNAVAILABLE and it is the client's retry policy that resends it (nginx then picks the other)."""
    servers = [ServerProcess(repository), ServerProcess(repository)]
    proxy = Nginx(tmp_path, [server.port for server in servers], next_upstream=request.param)
    yield servers, proxy
    proxy.stop()
    for server in servers:
        server.kill()


def test_a_stream_alternating_between_replicas_equals_one_call(replicas):
    servers, proxy = replicas
    x = np.random.default_rng(21).standard_normal((2, 12, 5)).astype(np.float32)
    with Client(proxy.address) as client:
        stream = client.stream(CHARS, version=1)
        outputs = [stream.feed(x[:, t : t + 2]).output for t in range(0, 12, 2)]
    with Client(servers[0].address) as direct:
        whole = direct.infer(CHARS, x, version=1)
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole.output, atol=1e-6, rtol=0)
    for (c, h), (c1, h1) in zip(stream.state.layers, whole.state.layers):
        np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
        np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)
    used = [tried[-1] for tried in proxy.upstreams(answered=6)]
    ports = {f"127.0.0.1:{server.port}" for server in servers}
    assert set(used) == ports  # both replicas served chunks of the one stream
    assert all(a != b for a, b in zip(used, used[1:]))  # round robin: each chunk on the other replica


def test_a_replica_killed_mid_stream_loses_nothing(replicas):
    servers, proxy = replicas
    x = np.random.default_rng(22).standard_normal((3, 16, 5)).astype(np.float32)
    with Client(servers[1].address) as direct:
        whole = direct.infer(CHARS, x, version=1)
    with Client(proxy.address) as client:
        stream = client.stream(CHARS, version=1)
        head = [stream.feed(x[:, t : t + 2]).output for t in range(0, 8, 2)]
        before = len(proxy.upstreams(answered=4))
        servers[0].kill()  # a crash: whatever it held is gone, and it held nothing
        tail = [stream.feed(x[:, t : t + 2]).output for t in range(8, 16, 2)]
    np.testing.assert_allclose(np.concatenate(head + tail, axis=1), whole.output, atol=1e-6, rtol=0)
    survivor, dead = f"127.0.0.1:{servers[1].port}", f"127.0.0.1:{servers[0].port}"
    tried = [address for call in proxy.upstreams(answered=8)[before:] for address in call]
    assert dead in tried  # a chunk after the crash was first sent to the dead replica...
    assert tried[-1] == survivor and tried.count(survivor) == 4  # ...and every chunk answered by the other
