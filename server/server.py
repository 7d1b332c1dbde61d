"""The server as one object: `Server(settings)`, then build, start, wait, stop; `run` does all four.

build: repository, batcher, admission, the protocols, health and reflection on a grpc.aio server, and
the HTTP edge (the Open Inference Protocol over REST) on the same data plane; start: bind both,
serve, metrics, health and the repository watcher; stop: gracefully, as below. Used by
the CLI (`run`), by each `--workers` process (`run`) and by the tests (start/stop on their own loop).

A graceful stop, from SIGTERM/SIGINT (or a test calling `stop`):

    health NOT_SERVING ─> new calls: UNAVAILABLE (HTTP 503), answered by us while gRPC and HTTP still
    run (the client retries them on another replica) ─> calls in flight finish, open streams are
    answered, for up to --grace-seconds ─> streams still open end with UNAVAILABLE ─> once no call
    has arrived for a moment, gRPC itself stops, and HTTP closes its connections

gRPC's own stop cancels the calls it has accepted but not yet handed to us, so it comes last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .admission import Admission
from .auth import ReflectionGuard, Tokens
from .batcher import Batcher
from .calls import Calls
from .console.service import ConsoleService
from .dataplane import DataPlane
from .errors import StartError
from .health import Health
from .limits import Limits
from .logs import ClientGoneFilter
from .memory import MemoryReturn
from .metrics import BatcherMetrics, Metrics
from .protocols.kserve_service import KServeServicer
from .protocols.rest_service import RestService
from .protocols.v1_service import LSTMServicer
from .reload import keep_in_sync
from .repository import ModelRepository
from .sealing import StateSeal
from .settings import HANDSHAKE_SECONDS, Settings
from .tls import CertificateFiles
from .web.connection import ConnectionLimits
from .web.cors import Cors
from .web.edge import HttpEdge
from .web.listener import HttpListener

log = logging.getLogger("lstmserve.server")

SERVICE = pb.DESCRIPTOR.services_by_name["LSTMService"]
KSERVE_SERVICE = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME, KSERVE_SERVICE_NAME = SERVICE.full_name, KSERVE_SERVICE.full_name
_QUIET_SECONDS = 0.1  # after the drain, how long no call may arrive before gRPC stops
_STREAMS_PER_CONNECTION = 256
# Calls gRPC has taken from the connections and not yet handed to lstmserve. Past its default (1000)
# gRPC refuses new calls at random with CANCELLED, which tells a client nothing about retrying, and
# fell on well-behaved clients too: 205 of 734 calls with 30 s deadlines beside a storm of 1-10 ms
# deadlines (docs/limits.md#under-overload). gRPC keeps the calls whose clients gave up in this
# backlog, so it is long under such a storm (about 900 measured): room for 4.5 times that. It is not
# more because each call waiting there may hold what its client sent within its first HTTP/2 window
# (64 KiB), outside --max-inflight-bytes: 256 MiB at most (docs/limits.md#memory).
_PENDING_CALLS = 4096


class Server:
    """One lstmserve server. `build()` and `start()` raise StartError (one line says why); `stop()` is
    the graceful stop, whatever asked for it."""

    def __init__(self, settings: Settings, reuse_port: bool = False):
        self.settings = settings
        self.reuse_port = reuse_port  # only --workers shares its port, on purpose
        self.port = 0
        self.http_port = 0  # bound at start; 0 while HTTP is off (--http-port -1)
        self.http: HttpListener | None = None
        self.health_grpc: grpc.aio.Server | None = None
        self._background: list[asyncio.Task] = []

    def build(self) -> None:
        """Load the repository and wire the parts to a grpc.aio server (in the loop that will run it)."""
        settings = self.settings
        grpc_log = logging.getLogger("grpc._cython.cygrpc")
        if not any(isinstance(known, ClientGoneFilter) for known in grpc_log.filters):
            grpc_log.addFilter(ClientGoneFilter())
        self.memory = MemoryReturn()
        self.tls = (
            CertificateFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            if settings.tls_cert
            else None
        )
        self._load_models()
        self.threads = settings.inference_threads or os.cpu_count() or 1
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="onnxruntime")
        self.tokens = Tokens(settings.auth_tokens) if settings.auth_tokens else None
        self.metrics = Metrics()
        for runtime in self.repository.all():
            self.metrics.loaded(runtime)
        self.admission = Admission(settings)
        self.metrics.watch(self.admission)
        plane = self._data_plane()
        self.health = Health(
            self.repository,
            self.batcher,
            self.admission,
            [SERVICE_NAME, KSERVE_SERVICE_NAME],
            settings.stall_seconds,
        )
        self._grpc_server(plane)
        if settings.http_port >= 0:
            self._http_server(plane)

    def _load_models(self) -> None:
        settings = self.settings
        cuda = {
            "device_id": settings.cuda_device_id,
            "mem_limit_mb": settings.cuda_mem_limit_mb,
            "arena": settings.cuda_arena,
            "tf32": settings.cuda_tf32 == "on",
        }
        self.repository = ModelRepository(
            settings.repository, settings.device, settings.intra_op_threads, cuda, settings.model_name
        )
        self.repository.load_all()  # RepositoryError is a StartError
        if not self.repository.names():
            log.warning("no model loaded from %s: every call will be NOT_FOUND", settings.repository)

    def _data_plane(self) -> DataPlane:
        """The batcher and the one path every protocol's inference calls take through it."""
        settings = self.settings
        self.batcher = Batcher(
            self.executor,
            settings.max_batch_rows,
            settings.max_delay_ms / 1e3,
            settings.max_queue_rows,
            settings.max_inline_steps,
            settings.max_request_row_steps,
            BatcherMetrics(self.metrics),
        )
        seal = (
            StateSeal(settings.state_key_file, settings.state_max_age_seconds)
            if settings.state_key_file
            else None
        )
        return DataPlane(self.repository, self.batcher, Limits.from_settings(settings), seal)

    def _grpc_server(self, plane: DataPlane) -> None:
        """The gRPC server and its services: both protocols' adapters, health and reflection."""
        interceptors = [ReflectionGuard(self.tokens, reflection.SERVICE_NAME)] if self.tokens else []
        self.grpc = grpc.aio.server(options=self._options(), interceptors=interceptors)
        calls = Calls(self.admission, self.metrics, self.settings.max_message_bytes, self.tokens)
        calls.register(self.grpc, SERVICE, LSTMServicer(plane))
        calls.register(self.grpc, KSERVE_SERVICE, KServeServicer(plane, self.health))
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.grpc)
        reflection.enable_server_reflection(
            [SERVICE_NAME, KSERVE_SERVICE_NAME, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc
        )

    def _http_server(self, plane: DataPlane) -> None:
        """The HTTP edge on the same data plane, admission, tokens, certificates and metrics."""
        settings = self.settings
        routes = RestService(plane, self.health).routes()
        if settings.http_console:
            routes += ConsoleService(plane, self.health, self.metrics, self.tokens is not None).routes()
        edge = HttpEdge(
            routes,
            self.admission,
            self.metrics,
            settings.max_message_bytes,
            self.tokens,
            Cors(settings.http_cors_origin),
        )
        self.http = HttpListener(
            edge,
            ConnectionLimits.from_settings(settings),
            settings.http_idle_seconds,
            self.tls.ssl_context if self.tls is not None else None,
            self.reuse_port,
        )

    async def start(self, reload: asyncio.Event | None = None) -> int:
        """Bind and serve; the port bound. `reload`, when set, rescans the repository at once (SIGHUP)."""
        settings = self.settings
        try:
            if self.tls is not None:
                self.port = self.grpc.add_secure_port(settings.address, self.tls.credentials)
            else:
                self.port = self.grpc.add_insecure_port(settings.address)
        except RuntimeError:  # newer grpcio raises where older ones returned 0
            self.port = 0
        if self.port == 0:
            raise StartError(f"cannot bind {settings.address} (in use, or not an address of this host)")
        await self.grpc.start()
        if self.http is not None:
            self.http_port = await self.http.start(settings.host, settings.http_port)
        if settings.health_port:
            await self._serve_health(settings.health_port)
        if settings.metrics_port:
            try:
                self.metrics.serve(settings.host, settings.metrics_port)
            except OSError as exc:
                raise StartError(
                    f"cannot serve metrics on {settings.host}:{settings.metrics_port} ({exc.strerror})"
                ) from None
            log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        await self.health.publish()
        watcher = keep_in_sync(
            self.repository,
            self.batcher,
            self.metrics,
            self.health,
            settings.poll_interval,
            reload or asyncio.Event(),
        )
        self._background = [
            asyncio.create_task(self.health.watch()),
            asyncio.create_task(watcher),
            asyncio.create_task(self.memory.run()),
        ]
        self._say_listening()
        return self.port

    def _say_listening(self) -> None:
        settings = self.settings
        batching = (
            f"batches of up to {settings.max_batch_rows} rows" if settings.max_batch_rows else "no batching"
        )
        security = "plaintext" if self.tls is None else ("mTLS" if self.tls.mutual else "TLS")
        security += ", tokens" if self.tokens is not None else ""
        if self.http is not None:  # before "listening on", which says the server is up
            scheme = "http" if self.tls is None else "https"
            log.info("HTTP (Open Inference Protocol) on %s://%s:%d/v2", scheme, settings.host, self.http_port)
            if settings.http_console:
                log.info("console: open %s://%s:%d/ in a browser", scheme, settings.host, self.http_port)
        log.info(
            "lstmserve listening on %s:%d, lstmserve.v1 and KServe v2 over %s; states %s "
            "(model versions: %d; inference threads: %d; %s)",
            settings.host,
            self.port,
            security,
            # Whether clients can read (and forge) the states they hold: docs/security.md.
            "sealed" if settings.state_key_file else "unsealed",
            len(self.repository.all()),
            self.threads,
            batching,
        )

    async def _serve_health(self, port: int) -> None:
        """grpc.health.v1 alone, in plaintext and without tokens, on its own port: Kubernetes' gRPC
        probes cannot speak TLS or send a token. It tells no more than SERVING or NOT_SERVING."""
        self.health_grpc = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.health_grpc)
        address = f"{self.settings.host}:{port}"
        try:
            bound = self.health_grpc.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise StartError(f"cannot bind the health port {address} (in use?)")
        await self.health_grpc.start()
        log.info("health (grpc.health.v1 only, plaintext) on %s", address)

    async def stop(self) -> None:
        """Refuse new calls, finish those in flight and answer streams for up to the grace, then stop
        gRPC. The whole stop takes at most grace + 3 s (drain, streams' last word, quiet, gRPC's own
        stop) plus an onnxruntime run in flight: the manifest's terminationGracePeriodSeconds must
        stay above that."""
        grace = self.settings.grace_seconds
        log.info("stopping: refusing new calls, finishing those in flight (up to %.0f s)", grace)
        grace_ends = time.monotonic() + grace
        await self.health.stop()
        if self.http is not None:
            self.http.closing()
        await self.admission.drain(grace)
        await _quiet(self.admission, max(1.0, grace_ends - time.monotonic()))
        for task in self._background:
            task.cancel()
        await asyncio.gather(self.grpc.stop(1.0), *([self.http.stop(1.0)] if self.http is not None else []))
        if self.health_grpc is not None:
            await self.health_grpc.stop(0)
        # An onnxruntime run cannot be interrupted: wait for one still going (the process could not
        # exit before it ends anyway), with the loop running so gRPC can finish the calls it cancelled.
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)
        batcher = self.batcher
        mean = batcher.requests / batcher.batches if batcher.batches else 0.0
        log.info(
            "stopped: %d requests in %d onnxruntime runs (%.1f per run)",
            batcher.requests,
            batcher.batches,
            mean,
        )

    def _options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            # gRPC shares ports by default on Linux: a second server would silently split the traffic.
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            # NOTE: with BDP probing gRPC widens a stream's HTTP/2 window however little the
            # server reads, so a client that writes and never reads parked ~400 MB here in a second
            # (80 streams). Off, a stream buffers at most one window (64 KiB) of unread requests.
            ("grpc.http2.bdp_probe", 0),
            # HTTP/2 streams one connection may open at once (gRPC's own default is unlimited): a
            # client past it waits for one to end. Each costs the server some kilobytes.
            ("grpc.max_concurrent_streams", _STREAMS_PER_CONNECTION),
            ("grpc.server_handshake_timeout_ms", HANDSHAKE_SECONDS * 1000),
            ("grpc.server.max_pending_requests", _PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", _PENDING_CALLS),
            *self._connection_options(),
        ]

    def _connection_options(self) -> list[tuple[str, int]]:
        """How long a connection lives and how it is kept alive. An aged-out connection gets a GOAWAY:
        the client reconnects, through the balancer, maybe to another replica, so long-lived
        connections do not pin clients to the replicas that were up when they connected. Safe here
        because no call's state lives on the server: a stream cut at the grace's end resumes
        elsewhere from the state its client holds."""
        settings, ms = self.settings, lambda seconds: int(seconds * 1000)
        options = [
            ("grpc.keepalive_time_ms", ms(settings.keepalive_seconds) or 2**31 - 1),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.min_client_ping_seconds)),
            ("grpc.http2.max_ping_strikes", 2),
        ]
        if settings.max_connection_age_seconds:
            options += [
                ("grpc.max_connection_age_ms", ms(settings.max_connection_age_seconds)),
                ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_seconds)),
            ]
        return options


def run(settings: Settings, reuse_port: bool = False, on_ready=None) -> int:
    """Serve until SIGTERM/SIGINT, then stop gracefully: 0. A server that cannot start logs one line
    saying why (no traceback) and returns 1. The CLI and every --workers process start here."""
    try:
        asyncio.run(_serve_until_signalled(Server(settings, reuse_port), on_ready))
    except StartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


async def _serve_until_signalled(server: Server, on_ready) -> None:
    # Before anything else: a signal that arrives during start-up must still mean a clean stop.
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)  # rescan the repository now
    server.build()
    port = await server.start(reload)
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    await server.stop()


async def _quiet(admission: Admission, limit: float) -> None:
    """Wait until no call has arrived for a moment (up to `limit` s): clients told UNAVAILABLE go
    elsewhere, and gRPC's own stop then has nothing accepted but unanswered to cancel."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        arrived = admission.arrivals
        await asyncio.sleep(_QUIET_SECONDS)
        if admission.arrivals == arrived and not admission.busy:
            return
