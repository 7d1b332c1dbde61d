"""Prometheus metrics on their own HTTP port (--metrics-port; off when 0).

    lstmserve_requests_total{model,protocol,method,code}   calls (and stream messages) by gRPC status
                                                     code; protocol: grpc or http
    lstmserve_request_seconds{model,protocol,method} total time per call or stream message
    lstmserve_queue_wait_seconds{model}              from joining the batcher's queue to the run starting
    lstmserve_compute_seconds{model}                 one onnxruntime run (a batch)
    lstmserve_batch_requests{model}                  requests per onnxruntime run
    lstmserve_batch_rows{model}                      rows (sequences) per onnxruntime run
    lstmserve_queue_rows{model}                      rows waiting now
    lstmserve_streams_in_flight                      open StreamInfer calls
    lstmserve_calls_in_flight                        unary calls being answered
    lstmserve_inflight_bytes                         bytes reserved by calls in flight (--max-inflight-bytes)
    lstmserve_model_info{model,version,fingerprint,quantization,provider,device}   1 per loaded version
    process_resident_memory_bytes, process_cpu_seconds_total, ...   the process's own (Linux)

`model` is "NAME:VERSION". Each server has its own registry, so several can live in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from .admission import Admission
from .batcher import Observer
from .runtime import ModelRuntime

_LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def model_label(runtime: ModelRuntime) -> str:
    return runtime.label


def name_of(label: str) -> str:
    """The model name in a model label: "digits:1" -> "digits" (admission's NO_MODEL stays itself)."""
    return label.rpartition(":")[0] or label


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lstmserve_requests",
            "Calls and stream messages by status code.",
            ["model", "protocol", "method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "lstmserve_request_seconds",
            "Time per call or stream message.",
            ["model", "protocol", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_wait = Histogram(
            "lstmserve_queue_wait_seconds",
            "Time in the batcher's queue.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.compute = Histogram(
            "lstmserve_compute_seconds", "One onnxruntime run.", ["model"], buckets=_LATENCY, registry=r
        )
        self.batch = Histogram(
            "lstmserve_batch_requests", "Requests per onnxruntime run.", ["model"], buckets=_BATCH, registry=r
        )
        self.batch_rows = Histogram(
            "lstmserve_batch_rows", "Rows per onnxruntime run.", ["model"], buckets=_ROWS, registry=r
        )
        self.queue_rows = Gauge("lstmserve_queue_rows", "Rows waiting in the batcher.", ["model"], registry=r)
        self.streams = Gauge("lstmserve_streams_in_flight", "Open StreamInfer calls.", registry=r)
        self.calls = Gauge("lstmserve_calls_in_flight", "Unary calls being answered.", registry=r)
        self.inflight_bytes = Gauge(
            "lstmserve_inflight_bytes", "Bytes reserved by calls in flight.", registry=r
        )
        self.model_info = Gauge(
            "lstmserve_model_info",
            "1 per loaded model version.",
            ["model", "version", "fingerprint", "quantization", "provider", "device"],
            registry=r,
        )
        self.process = ProcessCollector(registry=r)  # RSS and CPU time, as the default registry has them

    def answered(
        self, model: str, method: str, code: str, seconds: float | None = None, protocol: str = "grpc"
    ) -> None:
        """One call (or stream message) ended with `code`, as its client saw it; `seconds` when it was
        answered (a refused or abandoned stream counts, but has no one latency)."""
        self.requests.labels(model, protocol, method, code).inc()
        if seconds is not None:
            self.request_seconds.labels(model, protocol, method).observe(seconds)

    def watch(self, admission: Admission) -> None:
        """The in-flight gauges read the admission's counts when scraped: nothing to do per call."""
        self.streams.set_function(lambda: len(admission.streams))
        self.calls.set_function(lambda: admission.calls)
        self.inflight_bytes.set_function(lambda: admission.bytes)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def loaded(self, runtime: ModelRuntime) -> None:
        self.model_info.labels(*_info_labels(runtime)).set(1)

    def unloaded(self, runtime: ModelRuntime) -> None:
        self.model_info.remove(*_info_labels(runtime))


def _info_labels(runtime: ModelRuntime) -> tuple[str, ...]:
    info = runtime.info
    return (
        info.name,
        str(info.version),
        info.fingerprint,
        info.quantization,
        runtime.providers[0],
        runtime.device,
    )


class BatcherMetrics(Observer):
    """The batcher's Observer, recording into Metrics."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def waited(self, runtime: ModelRuntime, seconds: float) -> None:
        self.metrics.queue_wait.labels(model_label(runtime)).observe(seconds)

    def ran(self, runtime: ModelRuntime, requests: int, rows: int, seconds: float) -> None:
        label = model_label(runtime)
        self.metrics.compute.labels(label).observe(seconds)
        self.metrics.batch.labels(label).observe(requests)
        self.metrics.batch_rows.labels(label).observe(rows)

    def queued(self, runtime: ModelRuntime, rows: int) -> None:
        self.metrics.queue_rows.labels(model_label(runtime)).set(rows)
