"""End to end: the real API served over HTTP (Twilio's webhooks must reach it), the real worker on
the Temporal dev server, the Twilio emulator posting signed callbacks to the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from devstack.demo import ensure_demo_accounts
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.runtime import Stores
from tests.support.live_api import LiveServer
from tests.support.proxy import CuttableProxy


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


@pytest_asyncio.fixture
async def temporal_link(temporal_env: WorkflowEnvironment) -> AsyncIterator[CuttableProxy]:
    """A way to Temporal a test can cut: a module that points the API's settings at it (the worker and
    the test reach Temporal directly) makes Temporal unreachable for the API alone."""
    host, port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.close()
