"""Nobody rung twice: the worker dialling a customer is SIGKILLed at each point of the dial, another
worker process takes the dial over, and the carrier (the Twilio emulator) shows exactly one call.

The product in Twilio mode (the real ``twilio`` SDK against the emulator, the real API serving
Twilio's webhooks) with the real worker in a process of its own. The kill points:

* ``before-create``: the dial is recorded (``carrier_attempts``), Twilio not asked yet;
* ``twilio-accepted``: Twilio created the call, its answer has not reached the worker (the emulator
  holds it);
* ``before-sid-stored``: the worker has the call's sid and has not stored it.

After the kill the session's dial is retried on the new worker, which asks Twilio before dialling
(:mod:`dialler.outbound.attempts`); the call goes on as usual: answered, the agent bridged, wrap-up,
outcome, closed, one contact attempt.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from devstack import services
from devstack.twilio_emulator.client import EmulatorClient
from dialler.agents.models import Agent
from dialler.calls.models import CallSession
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio_voice import agent_identity
from dialler.outbound.models import CarrierAttempt
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.live_api import eventually
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.e2e

AGENT = "priya@rmc.example"
# Where the first worker dies: (fail point it stops at, or None for the emulator's held answer).
KILL_POINTS = {
    "before-create": "dial.before_create",
    "twilio-accepted": None,
    "before-sid-stored": "dial.before_store",
}
# The killed try is retried once Temporal gives up on it (the dial's start-to-close timeout, 30 s).
TAKEOVER_S = 90.0


@pytest.fixture
def settings(settings: Settings, emulator: EmulatorClient) -> Settings:
    return settings.model_copy(update={"telephony_mode": TelephonyMode.TWILIO, "twilio_api_base_url": emulator.url})


@pytest.fixture
def processes(tmp_path: Any) -> Iterator[services.ProcessGroup]:
    group = services.ProcessGroup(tmp_path / "processes", die_with_parent=True)
    yield group
    group.stop_all(timeout=5)


async def offer(http: httpx.AsyncClient, stores: Stores, replica_url: str) -> dict[str, Any]:
    """A customer reserved for the agent, who presses "call"."""
    await queue_one_customer(stores, replica_url)
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == AGENT).values(progressive_mode=False))
        await session.commit()
    headers = await start_available(http, AGENT)
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    assert offered["session_id"], offered
    dialled = await http.post(f"/api/v1/calls/{offered['session_id']}/dial", headers=headers)
    assert dialled.status_code == 202, dialled.text
    return offered | {"headers": headers}


async def session_row(stores: Stores, session_id: str) -> tuple[str, str | None]:
    async with stores.postgres.connect() as conn:
        row = (
            await conn.execute(
                select(CallSession.phone_e164, CallSession.twilio_call_sid).where(
                    CallSession.id == uuid.UUID(session_id)
                )
            )
        ).one()
    return str(row.phone_e164), row.twilio_call_sid


async def calls_to(emulator: EmulatorClient, phone: str) -> list[dict[str, Any]]:
    """Every call placed to the customer's number (the parent legs: agents' legs are to client:…)."""
    calls = await asyncio.to_thread(emulator.calls)
    return [c for c in calls if c["to"] == phone and not c.get("parent_call_sid")]


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
async def test_a_dial_whose_worker_is_killed_rings_the_customer_once(
    http: httpx.AsyncClient,
    stores: Stores,
    settings: Settings,
    replica_url: str,
    emulator: EmulatorClient,
    processes: services.ProcessGroup,
    kill_point: str,
) -> None:
    emulator.script("*", behaviour="answer", answer_after_s=0.5, hangup_after_s=None)
    async with stores.postgres.connect() as conn:
        agent = await conn.scalar(select(Agent.id).where(Agent.email == AGENT))
    emulator.device(agent_identity(int(agent or 0)), action="accept", accept_after_s=0.3)
    fail_point = KILL_POINTS[kill_point]
    first_settings = settings.model_copy(update={"fail_points": [fail_point] if fail_point else []})
    if fail_point is None:
        await asyncio.to_thread(emulator.hold_next_answer, "calls", 120)

    first = WorkerProcess(processes, "worker-1", first_settings)
    await asyncio.to_thread(first.wait_logged, "worker polling task queue")
    offered = await offer(http, stores, replica_url)
    session_id = offered["session_id"]

    if fail_point is not None:
        await asyncio.to_thread(first.wait_logged, f"fail point {fail_point} reached")
    else:  # Twilio has created the call; its answer to the worker is held
        await eventually(lambda: calls_to_any(emulator), within=30)
    phone, stored = await session_row(stores, session_id)
    at_kill = await calls_to(emulator, phone)
    assert stored is None  # the worker dies before the sid is stored, at every point
    assert len(at_kill) == (0 if kill_point == "before-create" else 1), at_kill
    assert first.kill() == -signal.SIGKILL

    second = WorkerProcess(processes, "worker-2", settings)
    path = f"/api/v1/calls/{session_id}"

    async def state_is(*states: str) -> bool:
        return bool((await http.get(path, headers=offered["headers"])).json()["state"] in states)

    await eventually(lambda: state_is("in_progress"), within=TAKEOVER_S, every=0.5)
    placed = await calls_to(emulator, phone)
    assert len(placed) == 1, placed  # nobody rung twice
    _, stored = await session_row(stores, session_id)
    assert stored == placed[0]["sid"]
    async with stores.postgres.connect() as conn:
        attempt = (await conn.execute(select(CarrierAttempt).where(CarrierAttempt.key == f"dial:{session_id}"))).one()
    assert attempt.sid == placed[0]["sid"]
    # Asked twice only when the first request never reached Twilio; adopted otherwise.
    assert attempt.requests == (2 if kill_point == "before-create" else 1)

    # The call goes on as usual on the new worker.
    await asyncio.to_thread(emulator.customer_hangup, placed[0]["sid"])
    await eventually(lambda: state_is("wrap_up"), within=30)
    saved = await http.post(f"{path}/outcome", json={"disposition": "not_interested"}, headers=offered["headers"])
    assert saved.status_code == 200, saved.text
    await eventually(lambda: state_is("closed"), within=30)
    async with stores.postgres.connect() as conn:
        attempts = await conn.scalar(
            text("SELECT count(*) FROM contact_attempts WHERE call_session_id = :s"), {"s": uuid.UUID(session_id)}
        )
    assert attempts == 1
    assert len(await calls_to(emulator, phone)) == 1
    assert second.proc.poll() is None


async def calls_to_any(emulator: EmulatorClient) -> bool:
    calls = await asyncio.to_thread(emulator.calls)
    return any(not c.get("parent_call_sid") for c in calls)
