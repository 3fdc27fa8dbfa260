"""A dependency that does not answer is a 503 naming it, with Retry-After, and leaves nothing half-done.

Each test runs the real app with one dependency's address pointing at a port where nothing listens
(the others are this test session's real services), calls a route that needs it, and checks both the
answer and that no partial write was left behind. The last test starts the API while Temporal is down,
then starts a Temporal dev server on that port: the same route works without restarting the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from devstack import services
from dialler import search_attributes
from dialler.agents.models import RefreshToken, Role
from dialler.audit.models import AuditEntry
from dialler.comms.models import SmsMessage
from dialler.config import Settings
from dialler.errors import DependencyUnavailable
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores, TemporalConnector, connect_temporal
from tests.support.api_agents import DEFAULT_PASSWORD, LoginAs, MakeAgent

ME_PRESENCE = "/api/v1/agents/me/presence"
NEXT_CALL = "/api/v1/agents/me/next-call"
LOGIN = "/api/v1/auth/login"


def closed_port() -> int:
    return services.free_port()  # free: nothing listens there


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its lifespan run, on these settings."""
    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["details"]["dependency"] == dependency
    assert error["details"]["retry_after_s"] == int(response.headers["Retry-After"])
    assert "Traceback" not in response.text


async def count(stores: Stores, model: Any) -> int:
    async with stores.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def health_details(settings: Settings) -> dict[str, str]:
    """The metrics token: anonymous /health answers only up or down, the dependencies need it."""
    return {"Authorization": f"Bearer {settings.metrics_token.get_secret_value()}"}


async def test_postgres_down_is_503_and_the_attempt_is_not_counted_against_the_agent(
    settings: Settings, stores: Stores, make_agent: MakeAgent
) -> None:
    agent = await make_agent(Role.AGENT)
    down = settings.model_copy(update={"postgres_url": f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x"})

    async with api(down) as http:
        response = await http.post(LOGIN, json={"email": agent.email, "password": DEFAULT_PASSWORD})

    assert_unavailable(response, "postgres")
    # The rate limit counts attempts before the password check; one that never reached it is given
    # back, or agents retrying through an outage would find themselves locked out when it ends.
    counters = [key async for key in stores.redis.scan_iter(f"{settings.redis_prefix}:ratelimit:login:*")]
    assert [await stores.redis.get(key) for key in counters] == ["0"] * len(counters)


async def test_redis_down_is_503_and_no_sign_in_is_issued(
    settings: Settings, stores: Stores, make_agent: MakeAgent
) -> None:
    agent = await make_agent(Role.AGENT)
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})

    async with api(down) as http:
        started = time.monotonic()
        response = await http.post(LOGIN, json={"email": agent.email, "password": DEFAULT_PASSWORD})
        elapsed = time.monotonic() - started

    assert_unavailable(response, "redis")
    assert elapsed < 10  # answered promptly, not after a 30 s socket timeout
    assert await count(stores, RefreshToken) == 0
    assert await count(stores, AuditEntry) == 0


async def test_replica_down_is_503_and_no_text_is_recorded_or_sent(
    settings: Settings, stores: Stores, client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    supervisor = await login_as(Role.SUPERVISOR)
    down = settings.model_copy(update={"replica_url": f"mysql+aiomysql://root@127.0.0.1:{closed_port()}/claims"})
    audit_before = await count(stores, AuditEntry)

    async with api(down) as http:
        response = await http.post(
            "/api/v1/sms/customers/42/messages", json={"text": "Hello from RMC"}, headers=supervisor.headers
        )

    assert_unavailable(response, "replica")
    assert await count(stores, SmsMessage) == 0
    assert await count(stores, AuditEntry) == audit_before


async def test_api_started_while_temporal_was_down_connects_once_it_is_up(
    settings: Settings, stores: Stores, client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    agent = await login_as(Role.AGENT)
    available = await client.put(ME_PRESENCE, json={"state": "available"}, headers=agent.headers)
    assert available.status_code == 200, available.text
    port = closed_port()
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}", "temporal_reconnect_interval_s": 0.0})

    async with api(down) as http:  # start-up does not fail while Temporal is down
        refused = await http.post(NEXT_CALL, headers=agent.headers)
        health_down = await http.get("/api/v1/health", headers=health_details(settings))

        assert_unavailable(refused, "temporal")
        assert {d["name"]: d["up"] for d in health_down.json()["dependencies"]}["temporal"] is False
        # Nothing half-done: the agent holds no customer and is still available.
        assert await queue_engine(stores).lease_of_agent(agent.agent.id) is None
        presence = await http.get(ME_PRESENCE, headers=agent.headers)
        assert presence.json()["state"] == "available"

        env = await WorkflowEnvironment.start_local(
            port=port,
            dev_server_existing_path=str(services.VENV_BIN / "temporal"),
            search_attributes=search_attributes.ALL,
            ui=False,
        )
        try:
            served = await http.post(NEXT_CALL, headers=agent.headers)
            health_up = await http.get("/api/v1/health", headers=health_details(settings))
        finally:
            await env.shutdown()

    assert served.status_code == 200, served.text
    assert served.json()["customer"] is None  # nobody in the queues: answered by the dialler, not a 503
    assert {d["name"]: d["up"] for d in health_up.json()["dependencies"]}["temporal"] is True


async def test_a_redis_that_stops_answering_is_a_503_within_seconds(
    settings: Settings, stores: Stores, make_agent: MakeAgent
) -> None:
    """A hung Redis (the connection opens, nothing ever comes back) fails the request in about
    ``redis_timeout_s``, not after half a minute with the agent's screen frozen."""
    agent = await make_agent(Role.AGENT)
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the connection open and never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    try:
        async with api(hung) as http:
            started = time.monotonic()
            response = await http.post(LOGIN, json={"email": agent.email, "password": DEFAULT_PASSWORD})
            elapsed = time.monotonic() - started
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

    assert_unavailable(response, "redis")
    # Bounded by the 2 s command timeout (a login makes a few Redis calls), not the 30 s it used to wait;
    # generous above so that a loaded machine does not fail it.
    assert hung.redis_timeout_s <= elapsed < 15
    assert await count(stores, RefreshToken) == 0


async def test_concurrent_requests_share_one_temporal_connection_attempt(settings: Settings) -> None:
    attempts = 0

    async def counting_connect(s: Settings) -> Client:
        nonlocal attempts
        attempts += 1
        return await connect_temporal(s)

    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{closed_port()}"})
    connector = TemporalConnector(down, connect=counting_connect)

    results = await asyncio.gather(*(connector.get() for _ in range(20)), return_exceptions=True)

    assert attempts == 1
    assert all(isinstance(r, DependencyUnavailable) and r.dependency == "temporal" for r in results)
