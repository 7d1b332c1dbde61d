"""Keep the served models in line with the repository folder, without a restart.

Every `poll_interval` seconds, and at once on SIGHUP, the repository is rescanned off the event loop:
new versions are loaded, replaced files reloaded, removed ones unloaded; calls in flight finish on the
runtime they hold. Health follows (server/health.py): a model name is SERVING while a version of it
is loaded.
"""

from __future__ import annotations

import asyncio
import logging

from .batcher import Batcher
from .health import Health
from .metrics import Metrics
from .repository import ModelRepository

log = logging.getLogger("lstmserve.server")


async def keep_in_sync(
    repository: ModelRepository,
    batcher: Batcher,
    metrics: Metrics,
    health: Health,
    poll_interval: float,
    reload: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
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
        await health.publish()
