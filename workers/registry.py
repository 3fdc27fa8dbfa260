"""What the worker runs: every workflow class and every activity method, in one list each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client

from dialler.config import Settings
from dialler.runtime import Stores


def workflows() -> Sequence[type]:
    return []


def activities_for(stores: Stores, client: Client) -> Sequence[Callable[..., Any]]:
    return []


async def on_worker_start(client: Client, settings: Settings) -> None:
    """Create or update the periodic schedules. Idempotent: every worker replica may run it."""
