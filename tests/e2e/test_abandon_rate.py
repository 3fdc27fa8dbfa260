"""Ofcom's abandoned-call rate stops progressive dialling, heard on the Twilio path.

The product in Twilio mode (the real ``twilio`` SDK, the real API serving Twilio's webhooks, the real
worker) against the Twilio emulator. A progressive agent's first call is answered by a person and
put through; the second rings an agent's phone that does not pick up within 2 s, so the customer
hears the information message and the call is recorded abandoned — the real abandoned path. The
queue's rate then stands at 1 abandoned of 2 live calls, over its ceiling: the server refuses the
agent's next progressive call with the reason, and the supervisor's API and board say why. Preview
dialling, where the agent starts each call, goes on (docs/COMPLIANCE.md). A ceiling above Ofcom's
3 % is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler import clock
from dialler.agents.models import Agent
from dialler.calls.messages import CallSessionInput
from dialler.calls.service import CallOffered, NoneEligible, take_next_call
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import agent_identity
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import customer_call, queue_one_customer, start_available
from tests.support.live_api import eventually, login
from tests.support.pacing import seed_calls

pytestmark = pytest.mark.e2e

AGENT = "tom@rmc.example"  # works the unsigned queue only
SUPERVISOR = "sam@rmc.example"
PRIYA = "priya@rmc.example"  # works unsigned and callbacks


@pytest.fixture
def settings(settings: Settings, emulator: EmulatorClient) -> Settings:
    return settings.model_copy(update={"telephony_mode": TelephonyMode.TWILIO, "twilio_api_base_url": emulator.url})


@pytest_asyncio.fixture
async def telephony(stores: Stores) -> AsyncIterator[TwilioTelephony]:  # type: ignore[override]
    twilio = TwilioTelephony(stores.settings)
    yield twilio
    await twilio.aclose()


async def set_progressive(stores: Stores, on: bool) -> int:
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == AGENT).values(progressive_mode=on))
        agent_id = await session.scalar(select(Agent.id).where(Agent.email == AGENT))
        await session.commit()
    assert agent_id is not None
    return int(agent_id)


async def new_customer_call(emulator: EmulatorClient, seen: set[str]) -> str:
    """The sid of the next call the product placed to a customer (a parent leg not seen before)."""
    sid = await customer_call(emulator, seen=seen)
    seen.add(sid)
    return sid


async def progressive_call(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Next call for a progressive agent whose phone is connected: the session dials at once."""
    assert (await http.post("/api/v1/voice/device-ready", headers=headers)).status_code == 204
    response = await http.post("/api/v1/agents/me/next-call", headers=headers)
    assert response.status_code == 200, response.text
    offered: dict[str, Any] = response.json()
    assert offered["session_id"], offered
    return offered


async def until_available(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    async def available() -> bool:
        got = await http.get("/api/v1/agents/me/presence", headers=headers)
        return bool(got.json()["state"] == "available")

    await eventually(available, within=30)


async def unsigned_pacing(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get("/api/v1/pacing/queues", headers=headers)
    assert response.status_code == 200, response.text
    [row] = [q for q in response.json()["queues"] if q["queue"] == "unsigned"]
    return dict(row)


async def test_the_rate_ceiling_pauses_progressive_dialling_and_says_why(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    temporal_client: Client,
) -> None:
    identity = agent_identity(await set_progressive(stores, True))
    await queue_one_customer(stores, replica_url)
    emulator.script("*", behaviour="answer", answer_after_s=0.5, hangup_after_s=None)
    supervisor = await login(http, SUPERVISOR)
    before = await unsigned_pacing(http, supervisor)
    assert (before["abandoned"], before["live_answered"], before["rate"]) == (0, 0, None)
    assert (before["ceiling"], before["state"], before["reason"]) == (0.01, "open", None)  # the default: 1 %

    # A ceiling above Ofcom's 3 % is refused, not capped; 3 % itself is the most a supervisor may set.
    refused = await http.put("/api/v1/pacing/queues/unsigned/ceiling", json={"ceiling": 0.04}, headers=supervisor)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "ceiling_above_ofcom_limit"
    assert "cannot be above 3 %" in refused.json()["error"]["message"]
    assert (await unsigned_pacing(http, supervisor))["ceiling"] == 0.01
    agent_headers = await start_available(http, AGENT)
    forbidden = await http.put("/api/v1/pacing/queues/unsigned/ceiling", json={"ceiling": 0.02}, headers=agent_headers)
    assert forbidden.status_code == 403
    raised = await http.put("/api/v1/pacing/queues/unsigned/ceiling", json={"ceiling": 0.03}, headers=supervisor)
    assert raised.status_code == 200, raised.text
    assert raised.json()["ceiling"] == 0.03

    seen: set[str] = set()
    # 1. A person answers and the agent's phone picks up at once: a live call, no drop.
    emulator.device(identity, action="accept", accept_after_s=0.4)
    first = await progressive_call(http, agent_headers)
    sid = await new_customer_call(emulator, seen)
    await asyncio.to_thread(emulator.wait_for, sid, "person_connected", 20.0)
    await asyncio.to_thread(emulator.customer_hangup, sid)

    async def wrap_up() -> bool:
        got = await http.get(f"/api/v1/calls/{first['session_id']}", headers=agent_headers)
        return bool(got.json()["state"] == "wrap_up")

    await eventually(wrap_up, within=20)
    outcome = await http.post(
        f"/api/v1/calls/{first['session_id']}/outcome", json={"disposition": "docs_promised"}, headers=agent_headers
    )
    assert outcome.status_code == 200, outcome.text
    await until_available(http, agent_headers)
    live = await unsigned_pacing(http, supervisor)
    assert (live["abandoned"], live["live_answered"], live["rate"], live["state"]) == (0, 1, 0.0, "open")

    # 2. A person answers and the agent's phone rings out past 2 s: the information message, abandoned.
    emulator.device(identity, action="accept", accept_after_s=2.5)
    second = await progressive_call(http, agent_headers)
    sid = await new_customer_call(emulator, seen)
    heard = await asyncio.to_thread(emulator.wait_ended, sid, 20.0)
    assert "person_connected" not in heard.kinds() and heard.first("say_start") is not None
    await asyncio.wait_for(temporal_client.get_workflow_handle(second["workflow_id"]).result(), 30)
    await until_available(http, agent_headers)

    # 1 abandoned of 2 live calls = 50 % ≥ the 3 % ceiling: paused, and the API says why.
    paused = await unsigned_pacing(http, supervisor)
    assert (paused["abandoned"], paused["live_answered"], paused["rate"]) == (1, 1, 0.5)
    assert paused["state"] == "paused"
    reason = "Progressive paused: abandoned rate 50 % ≥ ceiling 3 % (last 24 h)"
    assert paused["reason"] == reason

    # The progressive agent's next call is refused with that reason, and nobody is taken from the queue.
    depth = (await queue_engine(stores).depths())["unsigned"]
    assert (await http.post("/api/v1/voice/device-ready", headers=agent_headers)).status_code == 204
    refusal = await http.post("/api/v1/agents/me/next-call", headers=agent_headers)
    assert refusal.status_code == 409, refusal.text
    error = refusal.json()["error"]
    assert (error["code"], error["message"]) == ("progressive_paused", reason)
    assert error["details"]["queues"][0]["queue"] == "unsigned"
    assert (await queue_engine(stores).depths())["unsigned"] == depth
    assert (await http.get("/api/v1/calls/current", headers=agent_headers)).status_code == 204  # no session
    presence = await http.get("/api/v1/agents/me/presence", headers=agent_headers)
    assert presence.json()["state"] == "available"

    # The supervisor's board shows the queue paused and why.
    board = await http.get("/api/v1/dashboard", headers=supervisor)
    [row] = [q for q in board.json()["queues"] if q["queue"] == "unsigned"]
    assert row["pacing"]["state"] == "paused" and row["pacing"]["reason"] == reason
    assert (row["pacing"]["abandoned"], row["pacing"]["live_answered"]) == (1, 1)

    # Preview dialling goes on: the agent starts each call and is at the screen when it is answered.
    await set_progressive(stores, False)
    preview = await http.post("/api/v1/agents/me/next-call", headers=agent_headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["customer"] is not None


async def test_a_progressive_agent_is_offered_only_queues_under_their_ceiling(
    http: httpx.AsyncClient, stores: Stores, replica_url: str
) -> None:
    """Priya works unsigned and callbacks; unsigned is at its ceiling. With nobody due on callbacks she
    is told why nobody comes; with a callback due she is offered it, never an unsigned customer."""
    await queue_one_customer(stores, replica_url)
    await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=1), live=4, abandoned=1)  # 20 %
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == PRIYA).values(progressive_mode=True))
        await session.commit()
        priya = await session.scalar(select(Agent).where(Agent.email == PRIYA))
    assert priya is not None and priya.queues == ["unsigned", "callbacks"]
    headers = await start_available(http, PRIYA)
    assert (await http.post("/api/v1/voice/device-ready", headers=headers)).status_code == 204  # her phone is ready
    engine = queue_engine(stores)
    started: list[CallSessionInput] = []

    async def start_session(input: CallSessionInput) -> bool:  # the workflow's start, recorded
        started.append(input)
        return True

    async def next_call() -> CallOffered | NoneEligible:
        async with stores.sessions() as session:
            return await take_next_call(
                session=session, stores=stores, start_session=start_session, engine=engine, agent=priya
            )

    nobody = await next_call()
    assert isinstance(nobody, NoneEligible), nobody
    assert "progressive paused on unsigned (abandoned rate at its ceiling)" in nobody.reason
    assert started == [] and await engine.lease_of_agent(priya.id) is None

    [(user_id, _)] = await engine.page("unsigned", offset=0, limit=1)
    await engine.upsert(QueueEntry(user_id, "callbacks", score=0.0))  # a callback falls due
    offered = await next_call()
    assert isinstance(offered, CallOffered), offered
    assert (offered.lease.queue, offered.lease.user_id) == ("callbacks", user_id)
    assert [(s.queue, s.progressive) for s in started] == [("callbacks", True)]
