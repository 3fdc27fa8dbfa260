from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from api.app import create_app
from dialler.config import Settings


@pytest_asyncio.fixture
async def app(settings: Settings, stores) -> AsyncIterator[FastAPI]:  # type: ignore[no-untyped-def]
    """The real app with its lifespan run, on this test's services (``stores`` empties them first)."""
    from dialler.integrations.sqs import ensure_cdc_queues

    ensure_cdc_queues(settings)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
