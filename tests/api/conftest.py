from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from api.app import create_app
from dialler.agents.models import Agent, Role
from dialler.agents.passwords import hash_password
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import DEFAULT_PASSWORD, LoginAs, MakeAgent, SignedIn


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


# Agents and sign-in ------------------------------------------------------------------------------


@functools.cache
def _default_hash() -> str:
    # Argon2 is slow on purpose; one hash serves every test agent with the default password.
    return hash_password(DEFAULT_PASSWORD)


@pytest_asyncio.fixture
async def make_agent(stores: Stores) -> MakeAgent:
    """``await make_agent(Role.SUPERVISOR, email=..., password=..., queues=[...], active=...)`` -> Agent."""
    counter = itertools.count(1)

    async def make(
        role: Role = Role.AGENT,
        *,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        display_name: str | None = None,
        queues: list[str] | None = None,
        active: bool = True,
        trained_vulnerable: bool = False,
    ) -> Agent:
        n = next(counter)
        agent = Agent(
            email=email or f"{role.value}{n}@rmc.example",
            display_name=display_name or f"{role.value.title()} {n}",
            password_hash=_default_hash() if password == DEFAULT_PASSWORD else hash_password(password),
            role=role.value,
            queues=list(queues if queues is not None else ["unsigned"]),
            trained_vulnerable=trained_vulnerable,
            active=active,
        )
        async with stores.sessions() as session:
            session.add(agent)
            await session.commit()
            await session.refresh(agent)
        return agent

    return make


@pytest_asyncio.fixture
async def login_as(client: httpx.AsyncClient, make_agent: MakeAgent) -> LoginAs:
    """``await login_as(Role.ADMIN, **make_agent_kwargs)``: a new agent of that role, signed in
    through ``POST /auth/login``; ``.headers`` carries the bearer token."""

    async def login(role: Role = Role.AGENT, **kwargs: object) -> SignedIn:
        password = str(kwargs.get("password", DEFAULT_PASSWORD))
        agent = await make_agent(role, **kwargs)
        response = await client.post("/api/v1/auth/login", json={"email": agent.email, "password": password})
        assert response.status_code == 200, response.text
        body = response.json()
        return SignedIn(agent, body["access_token"], body["refresh_token"])

    return login
