"""grpc.health.v1 and KServe readiness, kept true, and the watchdog that keeps them so.

    overall, and each service   SERVING while a model is loaded and no model version is stalled
    each model name             SERVING while a version of it is loaded and none of them is stalled
    device/cpu, device/cuda     SERVING while overall is and every loaded version runs on that device
                                (a GPU pod's readiness probe names device/cuda: one that fell back to
                                the CPU takes no traffic)
    everything                  NOT_SERVING from the first moment of a graceful stop

A version is stalled when work waits for it and no batch has ended for --stall-seconds: a probe on
the overall status then restarts the process, rather than every call timing out behind it. The same
tick ends bidi streams idle for longer than --stream-idle-seconds, and unary calls whose request has
not arrived within --receive-seconds.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from .admission import Admission
from .batcher import Batcher
from .repository import ModelRepository
from .runtime import ModelRuntime

log = logging.getLogger("lstmserve.server")

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
DEVICES = ("cpu", "cuda")
SERVING_WORD = {True: "serving", False: "not serving"}


class Health:
    def __init__(
        self,
        repository: ModelRepository,
        batcher: Batcher,
        admission: Admission,
        services: list[str],
        stall_seconds: float,
    ):
        self.servicer = health.aio.HealthServicer()
        self.repository = repository
        self.batcher = batcher
        self.admission = admission
        self.services = services
        self.stall_seconds = stall_seconds
        self.names: set[str] = set()  # every model name ever served keeps an entry
        self.stalled: set[ModelRuntime] = set()
        self._published: dict[str, int] = {}

    def ready(self, runtime: ModelRuntime | None = None) -> bool:
        """KServe's ServerReady (no runtime) and ModelReady: serving, and not stalled."""
        if runtime is not None:
            return runtime not in self.stalled
        return bool(self.repository.names()) and not self.stalled

    def serving(self) -> bool:
        """Ready, and not stopping: what a readiness probe and the console are told."""
        return self.ready() and not self.admission.stopping

    def devices(self) -> dict[str, str]:
        """Each device's health: serving while the server is and every loaded version runs on it;
        unused where no version runs on it (not down: there is nothing to take traffic from)."""
        running = {runtime.device.partition(":")[0] for runtime in self.repository.all()}  # cuda:0 -> cuda
        return {
            device: "unused"
            if device not in running
            else SERVING_WORD[self.serving() and running == {device}]
            for device in DEVICES
        }

    async def publish(self) -> None:
        """Set every entry from what is served and what is stalled now (only changes are sent)."""
        served = set(self.repository.names())
        self.names |= served
        stalled_names = {runtime.info.name for runtime in self.stalled}
        status = {
            name: SERVING if name in served and name not in stalled_names else NOT_SERVING
            for name in self.names
        }
        overall = SERVING if self.ready() else NOT_SERVING  # no model: nothing to serve
        status.update({service: overall for service in ["", *self.services]})  # "": overall health
        # "/" is in no model name (layout.py)
        status.update(
            {f"device/{d}": SERVING if s == "serving" else NOT_SERVING for d, s in self.devices().items()}
        )
        for name, value in status.items():
            if self._published.get(name) != value:
                await self.servicer.set(name, value)
                self._published[name] = value

    async def watch(self) -> None:
        """Every tick: end idle streams and late receives, turn stalled versions NOT_SERVING (and back)."""
        tick = min(
            1.0, self.stall_seconds / 4, self.admission.idle_seconds / 4, self.admission.receive_seconds / 4
        )
        while True:
            await asyncio.sleep(tick)
            try:
                await self._check()
            except Exception:  # a watchdog that dies tells no one: log it and keep watching
                log.exception("health watchdog failed")

    async def _check(self) -> None:
        self.admission.end_idle_streams()
        self.admission.end_late_receives()
        stalled = set(self.batcher.stalled(self.stall_seconds))
        if stalled != self.stalled:
            for runtime in stalled - self.stalled:
                log.error(
                    "%s v%d stalled: work has waited %g s with no batch ending; health NOT_SERVING",
                    runtime.info.name,
                    runtime.info.version,
                    self.stall_seconds,
                )
            for runtime in self.stalled - stalled:
                log.warning("%s v%d makes progress again", runtime.info.name, runtime.info.version)
            self.stalled = stalled
            await self.publish()

    async def stop(self) -> None:
        """A graceful stop begins: NOT_SERVING everywhere, for good."""
        await self.servicer.enter_graceful_shutdown()
