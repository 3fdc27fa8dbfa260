"""The CDC publisher under test: options for a test run, and running it in a task."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from dialler.cdc.publisher import (
    Publisher,
    PublisherOptions,
)
from dialler.config import Settings


def options(**overrides: Any) -> PublisherOptions:
    values: dict[str, Any] = {
        "checkpoint_name": f"test-{uuid.uuid4().hex[:10]}",
        "metrics_port": None,
        "status_interval_s": 0.1,
        "retry_max_s": 0.3,
        "shutdown_grace_s": 1.0,
    }
    return PublisherOptions.from_settings(Settings(), **(values | overrides))


@contextlib.asynccontextmanager
async def running(publisher: Publisher) -> AsyncIterator[asyncio.Task[None]]:
    """The publisher running in a task; stopped gracefully (and awaited) at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    started = asyncio.create_task(publisher.started.wait())
    await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if task.done():
        task.result()  # raises what stopped it
    assert publisher.started.is_set(), "publisher did not start"
    try:
        yield task
    finally:
        stop.set()
        if not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
