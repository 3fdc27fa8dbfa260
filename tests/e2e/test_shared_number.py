"""Never two live calls to one number: two customers who share a phone (a household), offered to two
agents at the same moment, both dialled at once. On the real API, worker, Temporal, PostgreSQL, Redis,
MariaDB and the Twilio emulator.

The chaos run found it (docs/RELIABILITY.md, finding 5): the lease is per customer, and nothing held
the number while a call to it was live, so both agents rang it within a second of each other.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler import clock
from dialler.compliance.gates import NUMBER_IN_CALL_RETRY
from dialler.queues.rebuild import decisions_for, recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import customer_legs, start_available
from tests.support.live_api import eventually
from tests.support.replica_customers import add_customer

pytestmark = pytest.mark.e2e

HOUSEHOLD = ("07700 900555", "+447700900555")


async def test_two_customers_sharing_a_number_dialled_at_once_ring_it_once(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    phone, e164 = HOUSEHOLD
    for user_id in (1, 2):
        await add_customer(replica_writer, user_id, phone=phone, e164=e164)
    await recompute(stores, queue_engine(stores), [1, 2])
    # The household's phone rings on for a while: the first call is live when the second is dialled.
    emulator.script("*", behaviour="no-answer", answer_after_s=20.0)

    agents = [await start_available(http, email) for email in ("priya@rmc.example", "tom@rmc.example")]
    offers = [(await http.post("/api/v1/agents/me/next-call", headers=h)).json() for h in agents]
    assert sorted(o["customer"]["user_id"] for o in offers) == [1, 2]  # one customer each: two leases
    started = clock.now(stores.settings)
    dials = await asyncio.gather(
        *(http.post(f"/api/v1/calls/{o['session_id']}/dial", headers=h) for o, h in zip(offers, agents, strict=True))
    )
    assert [d.status_code for d in dials] == [202, 202]

    async def settled() -> list[dict] | None:
        calls = [
            (await http.get(f"/api/v1/calls/{o['session_id']}", headers=h)).json()
            for o, h in zip(offers, agents, strict=True)
        ]
        refused = [c for c in calls if c.get("refusal")]
        return calls if refused else None

    calls = await eventually(settled, within=30)
    refused = [c for c in calls if c.get("refusal")]
    rung = [c for c in calls if not c.get("refusal")]
    assert len(refused) == 1 and len(rung) == 1
    # The second dial was told why, and when the number is asked about again (not dropped).
    reasons = refused[0]["refusal"]["reasons"]
    assert reasons[0].startswith("number_in_call: a call to this number is under way")
    next_allowed = datetime.fromisoformat(refused[0]["refusal"]["next_allowed_at"])
    assert started < next_allowed <= clock.now(stores.settings) + timedelta(minutes=5)

    # The carrier placed exactly one call to the household.
    assert len([c for c in await customer_legs(emulator) if c["to"] == e164]) == 1
    # A refused dial is not an attempt, and placement holds the customer until the number is asked
    # about again (what the session's release puts back in the queue).
    refused_user = next(o["customer"]["user_id"] for o in offers if o["session_id"] == refused[0]["session_id"])
    async with stores.postgres.connect() as conn:
        attempts = await conn.scalar(
            text("SELECT count(*) FROM contact_attempts WHERE user_id = :u"), {"u": refused_user}
        )
    assert attempts == 0
    now = clock.now(stores.settings)
    placed = await decisions_for(
        replica=stores.replica, postgres=stores.postgres, now=now, settings=stores.settings, user_ids=[refused_user]
    )
    entry = placed[0].entry
    assert entry is not None and entry.not_before == pytest.approx((now + NUMBER_IN_CALL_RETRY).timestamp())


async def test_a_number_listed_by_a_calls_outcome_takes_everyone_who_has_it_out_of_the_queues(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, temporal_client: Client
) -> None:
    """An outcome of "wrong number" (or "do not call") lists the number, not the customer: the
    household member who shares it leaves the queues with the call's close, not at the next rebuild
    (the chaos run's drift after such outcomes: queued customers a rebuild would drop)."""
    phone, e164 = HOUSEHOLD
    for user_id in (1, 2):
        await add_customer(replica_writer, user_id, phone=phone, e164=e164)
    engine = queue_engine(stores)
    await recompute(stores, engine, [1, 2])
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    other = 3 - offered["customer"]["user_id"]
    assert await engine.position(other) is not None

    recorded = await http.post(
        f"/api/v1/calls/{offered['session_id']}/outcome", json={"disposition": "wrong_number"}, headers=headers
    )
    assert recorded.status_code == 200, recorded.text
    await asyncio.wait_for(temporal_client.get_workflow_handle(offered["workflow_id"]).result(), 30)

    assert await engine.position(other) is None  # out of the queues with the call's close
    async with stores.postgres.connect() as conn:
        listed = await conn.scalar(text("SELECT count(*) FROM do_not_call WHERE phone_e164 = :p"), {"p": e164})
    assert listed == 1
