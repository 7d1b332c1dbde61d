"""Start the grpc.aio server: repository, both protocols' servicers, health, reflection; stop gracefully
on a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from .batcher import Batcher
from .kserve import SERVICE_NAME as KSERVE_SERVICE_NAME
from .kserve import KServeServicer
from .metrics import BatcherMetrics, Metrics
from .reload import keep_in_sync, publish_health
from .repository import ModelRepository, RepositoryError
from .servicer import LSTMServicer
from .settings import Settings

log = logging.getLogger("lstmserve.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LSTMService"].full_name


class StartError(Exception):
    """The server could not start (no repository, port taken): the message says why."""


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT where no event is given), then stop gracefully."""
    reload = asyncio.Event()  # SIGHUP: rescan the repository now
    if stop is None:
        # Before anything else: a signal that arrives during start-up must still mean a clean stop.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
    repository = ModelRepository(settings.repository, settings.device, settings.intra_op_threads)
    try:
        repository.load_all()
    except RepositoryError as exc:
        raise StartError(str(exc)) from None
    if not repository.names():
        log.warning("no model loaded from %s: every call will be NOT_FOUND", settings.repository)

    threads = settings.inference_threads or os.cpu_count() or 1
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="onnxruntime")
    size = settings.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
            # gRPC shares ports by default on Linux: a second server would silently split the traffic.
            # Only --workers shares, on purpose.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
    )
    metrics = Metrics()
    for runtime in repository.all():
        metrics.loaded(runtime)
    batcher = Batcher(
        executor,
        settings.max_batch_rows,
        settings.max_delay_ms / 1e3,
        settings.max_queue_rows,
        settings.max_inline_steps,
        BatcherMetrics(metrics),
    )
    pb_grpc.add_LSTMServiceServicer_to_server(LSTMServicer(repository, batcher, metrics), server)
    kserve_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(repository, batcher, metrics, stop), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, KSERVE_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        port = server.add_insecure_port(settings.address)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        port = 0
    if port == 0:
        raise StartError(f"cannot bind {settings.address} (in use, or not an address of this host)")
    await server.start()
    if settings.metrics_port:
        try:
            metrics.serve(settings.host, settings.metrics_port)
        except OSError as exc:
            raise StartError(
                f"cannot serve metrics on {settings.host}:{settings.metrics_port} ({exc.strerror})"
            ) from None
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)

    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set(health.OVERALL_HEALTH, serving)
    await health_servicer.set(SERVICE_NAME, serving)
    await health_servicer.set(KSERVE_SERVICE_NAME, serving)
    await publish_health(health_servicer, repository, set(repository.names()))  # per model name
    syncing = asyncio.create_task(
        keep_in_sync(repository, batcher, metrics, health_servicer, settings.poll_interval, reload)
    )
    batching = (
        f"batches of up to {settings.max_batch_rows} rows" if settings.max_batch_rows else "no batching"
    )
    log.info(
        "lstmserve listening on %s:%d, lstmserve.v1 and KServe v2 "
        "(model versions: %d; inference threads: %d; %s)",
        settings.host,
        port,
        len(repository.all()),
        threads,
        batching,
    )
    if on_ready is not None:
        on_ready(port)

    await stop.wait()

    log.info("stopping: refusing new calls, finishing those in flight (up to %.0f s)", settings.grace_seconds)
    syncing.cancel()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    executor.shutdown(wait=True)
    mean = batcher.requests / batcher.batches if batcher.batches else 0.0
    log.info(
        "stopped: %d requests in %d onnxruntime runs (%.1f per run)", batcher.requests, batcher.batches, mean
    )
