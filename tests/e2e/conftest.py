"""End to end: the real API served over HTTP (Twilio's webhooks must reach it), the real worker on
the Temporal dev server, the Twilio emulator posting signed callbacks to the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from devstack.demo import ensure_demo_accounts
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.runtime import Stores
from tests.support.live_api import LiveServer


@pytest_asyncio.fixture
async def live_api(settings: Settings, stores: Stores, replica_url: str) -> AsyncIterator[str]:
    ensure_cdc_queues(settings)
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)
    with LiveServer(settings) as server:
        yield server.url


@pytest_asyncio.fixture
async def http(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=15) as client:
        yield client
