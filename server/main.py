"""Start the grpc.aio server: repository, both protocols, health, reflection; stop gracefully on a signal.

A graceful stop, from SIGTERM/SIGINT (or `stop` being set):

    health NOT_SERVING ─> new calls: UNAVAILABLE, answered by us while gRPC still runs (the client
    retries them on another replica) ─> calls in flight finish, open streams are answered, for up to
    --grace-seconds ─> streams still open end with UNAVAILABLE ─> once no call has arrived for a
    moment, gRPC itself stops

gRPC's own stop cancels the calls it has accepted but not yet handed to us, so it comes last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .admission import Admission
from .batcher import Batcher
from .calls import Calls, ClientGoneFilter
from .errors import StartError
from .health import Health
from .limits import Limits
from .metrics import BatcherMetrics, Metrics
from .protocols.kserve_service import KServeServicer
from .protocols.v1_service import LSTMServicer
from .reload import keep_in_sync
from .repository import ModelRepository
from .runtime import give_memory_back
from .settings import Settings

log = logging.getLogger("lstmserve.server")

SERVICE = pb.DESCRIPTOR.services_by_name["LSTMService"]
KSERVE_SERVICE = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME, KSERVE_SERVICE_NAME = SERVICE.full_name, KSERVE_SERVICE.full_name
_QUIET_SECONDS = 0.1  # after the drain, how long no call may arrive before gRPC stops
_STREAMS_PER_CONNECTION = 256


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
    grpc_log = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(known, ClientGoneFilter) for known in grpc_log.filters):
        grpc_log.addFilter(ClientGoneFilter())
    give_memory_back()
    repository = ModelRepository(settings.repository, settings.device, settings.intra_op_threads)
    repository.load_all()  # RepositoryError is a StartError
    if not repository.names():
        log.warning("no model loaded from %s: every call will be NOT_FOUND", settings.repository)

    threads = settings.inference_threads or os.cpu_count() or 1
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="onnxruntime")
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # gRPC shares ports by default on Linux: a second server would silently split the traffic.
            # Only --workers shares, on purpose.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # NOTE: with BDP probing gRPC widens a stream's HTTP/2 window however little the
            # server reads, so a client that writes and never reads parked ~400 MB here in a second
            # (80 streams). Off, a stream buffers at most one window (64 KiB) of unread requests.
            ("grpc.http2.bdp_probe", 0),
            # HTTP/2 streams one connection may open at once (gRPC's own default is unlimited): a
            # client past it waits for one to end. Each costs the server some kilobytes.
            ("grpc.max_concurrent_streams", _STREAMS_PER_CONNECTION),
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
        settings.max_request_row_steps,
        BatcherMetrics(metrics),
    )
    admission = Admission(settings)
    metrics.watch(admission)
    limits = Limits.from_settings(settings)
    health = Health(
        repository, batcher, admission, [SERVICE_NAME, KSERVE_SERVICE_NAME], settings.stall_seconds
    )
    calls = Calls(admission, metrics, settings.max_message_bytes)
    calls.register(server, SERVICE, LSTMServicer(repository, batcher, limits))
    calls.register(server, KSERVE_SERVICE, KServeServicer(repository, batcher, limits, health))
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, KSERVE_SERVICE_NAME, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME], server
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

    await health.publish()
    background = [
        asyncio.create_task(health.watch()),
        asyncio.create_task(
            keep_in_sync(repository, batcher, metrics, health, settings.poll_interval, reload)
        ),
    ]
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
    # The whole stop takes at most grace + 3 s (drain, streams' last word, quiet, gRPC's own stop):
    # the manifest's terminationGracePeriodSeconds must stay above that, or the kubelet kills it.
    grace_ends = time.monotonic() + settings.grace_seconds
    await health.stop()
    await admission.drain(settings.grace_seconds)
    await _quiet(admission, max(1.0, grace_ends - time.monotonic()))
    for task in background:
        task.cancel()
    await server.stop(1.0)
    executor.shutdown(wait=True)
    mean = batcher.requests / batcher.batches if batcher.batches else 0.0
    log.info(
        "stopped: %d requests in %d onnxruntime runs (%.1f per run)", batcher.requests, batcher.batches, mean
    )


async def _quiet(admission: Admission, limit: float) -> None:
    """Wait until no call has arrived for a moment (up to `limit` s): clients told UNAVAILABLE go
    elsewhere, and gRPC's own stop then has nothing accepted but unanswered to cancel."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        arrived = admission.arrivals
        await asyncio.sleep(_QUIET_SECONDS)
        if admission.arrivals == arrived and not admission.busy:
            return
