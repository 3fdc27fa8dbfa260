"""A worker for one workflow whose activities a test replaced with same-named stubs, on a task queue of
its own, sandboxed as the worker runs workflows in development."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from workers.worker import sandboxed_runner


@asynccontextmanager
async def stubbed_worker(client: Client, workflow: type, activities: Sequence[Any], *, name: str) -> AsyncIterator[str]:
    """Runs the worker while the block does; yields its task queue (``<name>-<random>``)."""
    queue = f"{name}-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[workflow], activities=activities, workflow_runner=sandboxed_runner()
    ):
        yield queue
