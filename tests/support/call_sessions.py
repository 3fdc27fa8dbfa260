"""Call-session set-up shared by the end-to-end tests: a customer in a queue, an agent available."""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Any

import httpx

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.live_api import eventually, login


async def queue_one_customer(stores: Stores, replica_url: str) -> int:
    """A small replica and one customer placed by the queue rules (as a rebuild or CDC would)."""
    from dialler.queues.rebuild import recompute

    await seed_replica(replica_url, users=60, seed=21)
    engine = queue_engine(stores)
    await recompute(stores, engine, list(range(1, 61)))
    depths = await engine.depths()
    assert depths["unsigned"] > 0
    return depths["unsigned"]


async def start_available(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    headers = await login(http, email)
    response = await http.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=headers)
    assert response.status_code == 200, response.text
    return headers


async def customer_legs(emulator: EmulatorClient) -> list[dict[str, Any]]:
    """The calls the product placed to customers: parent legs (an agent's bridged leg has a parent)."""
    return [c for c in await asyncio.to_thread(emulator.calls) if not c.get("parent_call_sid")]


async def customer_call(emulator: EmulatorClient, *, within: float = 20, seen: Set[str] = frozenset()) -> str:
    """The sid of the first call the product placed to a customer, other than those ``seen``."""

    async def placed() -> str | None:
        fresh = [c["sid"] for c in await customer_legs(emulator) if c["sid"] not in seen]
        return fresh[0] if fresh else None

    sid: str = await eventually(placed, within=within)
    return sid
