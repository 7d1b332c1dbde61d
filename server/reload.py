"""Keep the served models in line with the repository folder, without a restart.

Every `poll_interval` seconds, and at once on SIGHUP, the repository is rescanned off the event loop:
new versions are loaded, replaced files reloaded, removed ones unloaded; calls in flight finish on the
runtime they hold. Health follows: a model name is SERVING while any version of it is loaded.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health_pb2

from .batcher import Batcher
from .metrics import Metrics
from .repository import ModelRepository

log = logging.getLogger("lstmserve.server")


async def keep_in_sync(
    repository: ModelRepository,
    batcher: Batcher,
    metrics: Metrics,
    health_servicer,
    poll_interval: float,
    reload: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    names = set(repository.names())
    while True:
        try:
            await asyncio.wait_for(reload.wait(), poll_interval or None)
        except asyncio.TimeoutError:
            pass
        reload.clear()
        changes = await loop.run_in_executor(None, repository.refresh)  # loading a model takes a while
        for runtime in changes.removed:
            batcher.forget(runtime)
            metrics.unloaded(runtime)
        for runtime in changes.added:
            metrics.loaded(runtime)
        names |= set(repository.names())
        await publish_health(health_servicer, repository, names)


async def publish_health(health_servicer, repository: ModelRepository, names: set[str]) -> None:
    """One health entry per model name ever served: SERVING while it has a version, else NOT_SERVING."""
    served = set(repository.names())
    for name in names:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if name in served
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await health_servicer.set(name, status)
