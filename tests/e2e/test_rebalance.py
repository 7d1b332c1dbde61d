"""Connections age out (GOAWAY) and clients reconnect through the balancer, so one long-lived client
spreads over the replicas that are up, not only those that were up when it connected; its streams
carry on from the state they hold, with no failed chunk and the answer of one call."""

from __future__ import annotations

import threading
import urllib.request

import numpy as np

from lstmserve.client import Client

from ..conftest import CHARS
from ..servers import ServerProcess, free_port
from .tcp_balancer import TcpBalancer

AGE = ("--max-connection-age-seconds", "1", "--max-connection-age-grace-seconds", "0.5")


def requests_served(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lstmserve_requests_total{") and 'code="OK"' in line
    )


def test_aged_out_connections_spread_one_clients_streams_over_both_replicas(repository):
    metrics = [free_port(), free_port()]
    replicas = [ServerProcess(repository, "--metrics-port", str(port), *AGE) for port in metrics]
    balancer = TcpBalancer([replica.port for replica in replicas])
    rng = np.random.default_rng(3)
    sequences = [rng.standard_normal((1, 40, 5)).astype(np.float32) for _ in range(4)]
    answers: dict[int, list] = {}
    failures: list[BaseException] = []
    try:
        # One client, one channel, as an application holds it: every stream shares its connection.
        with Client(balancer.address, timeout=10) as client:

            def stream_one(index: int) -> None:
                try:
                    with client.stream(CHARS, version=1, bidi=True) as stream:
                        answers[index] = []
                        for step in range(40):  # one step every 0.1 s: 4 s, across several age-outs
                            answers[index].append(stream.feed(sequences[index][:, step : step + 1]))
                            threading.Event().wait(0.1)
                except BaseException as exc:  # the test's finding: no chunk may fail
                    failures.append(exc)

            threads = [threading.Thread(target=stream_one, args=(i,)) for i in range(len(sequences))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not failures, failures
            for index, sequence in enumerate(sequences):
                whole = client.infer(CHARS, sequence, version=1)
                streamed = np.concatenate([answer.output for answer in answers[index]], axis=1)
                np.testing.assert_allclose(streamed, whole.output, atol=1e-6, rtol=0)
                for (c, h), (c1, h1) in zip(answers[index][-1].state.layers, whole.state.layers):
                    np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
                    np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)
        served = [requests_served(port) for port in metrics]
    finally:
        balancer.close()
        for replica in replicas:
            assert replica.terminate() == 0
    assert min(balancer.connections.values()) >= 1, balancer.connections  # it reconnected, elsewhere too
    assert min(served) >= 10, served  # both replicas answered a good share of the chunks
