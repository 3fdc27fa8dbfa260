"""Nobody rung (or texted) twice: the worker dialling a customer, or texting her a magic link, is
SIGKILLed at each point of the request, another worker process takes it over, and the carrier (the
Twilio emulator) shows exactly one call, or one text whose link works.

The product in Twilio mode (the real ``twilio`` SDK against the emulator, the real API serving
Twilio's webhooks) with the real worker in a process of its own. The kill points:

* ``before-create``: the dial is recorded (``carrier_attempts``), Twilio not asked yet;
* ``twilio-accepted``: Twilio created the call, its answer has not reached the worker (the emulator
  holds it);
* ``before-sid-stored``: the worker has the call's sid and has not stored it.

After the kill the session's dial is retried on the new worker, which asks Twilio before dialling
(:mod:`dialler.outbound.attempts`); the call goes on as usual: answered, the agent bridged, wrap-up,
outcome, closed, one contact attempt. The same points for the text of a magic link: one text, and the
link in it is the one that opens the portal (a retry that issued a second link would have killed it).
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
from dialler.comms.models import SmsMessage
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio import twilio_client
from dialler.integrations.twilio_voice import agent_identity
from dialler.outbound.models import CarrierAttempt
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.live_api import eventually, login
from tests.support.replica_customers import add_customer
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.e2e

AGENT = "priya@rmc.example"
# Where the first worker dies: (fail point it stops at, or None for the emulator's held answer).
KILL_POINTS = {
    "before-create": "dial.before_create",
    "twilio-accepted": None,
    "before-sid-stored": "dial.before_store",
}
SMS_KILL_POINTS = {
    "before-create": "sms.before_create",
    "twilio-accepted": None,
    "before-sid-stored": "sms.before_store",
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


async def texts_to(settings: Settings, phone: str) -> list[str]:
    """Every text the carrier has to the customer's number, as the customer's phone shows them."""
    client = twilio_client(settings)
    return [str(m.body) for m in await asyncio.to_thread(lambda: client.messages.list(to=phone))]


@pytest.mark.parametrize("kill_point", list(SMS_KILL_POINTS))
async def test_a_magic_link_whose_worker_is_killed_is_texted_once_and_opens_the_portal(
    http: httpx.AsyncClient,
    stores: Stores,
    settings: Settings,
    replica_writer: Any,
    emulator: EmulatorClient,
    processes: services.ProcessGroup,
    kill_point: str,
) -> None:
    """The text's status callbacks are lost (the workers give Twilio a callback address nobody answers),
    so nothing but the carrier's own list of messages can tell the new worker the text went."""
    customer = await add_customer(replica_writer, 1, signed=True)
    await recompute(stores, queue_engine(stores), [1])
    fail_point = SMS_KILL_POINTS[kill_point]
    settings = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{services.free_port()}"})
    first_settings = settings.model_copy(update={"fail_points": [fail_point] if fail_point else []})
    if fail_point is None:
        await asyncio.to_thread(emulator.hold_next_answer, "messages", 120)
    first = WorkerProcess(processes, "worker-1", first_settings)
    await asyncio.to_thread(first.wait_logged, "worker polling task queue")

    sam = await login(http, "sam@rmc.example")
    response = await http.post(
        "/api/v1/sms/customers/1/magic-links",
        json={"purpose": "upload", "requirement_id": customer.requirement_id},
        headers=sam,
    )
    assert response.status_code == 202, response.text
    if fail_point is not None:
        await asyncio.to_thread(first.wait_logged, f"fail point {fail_point} reached")
    else:  # Twilio has the text; its answer to the worker is held
        await eventually(lambda: texts_to(settings, customer.e164), within=30)
    assert len(await texts_to(settings, customer.e164)) == (0 if kill_point == "before-create" else 1)
    assert first.kill() == -signal.SIGKILL

    WorkerProcess(processes, "worker-2", settings)

    async def link_message() -> SmsMessage | None:
        async with stores.sessions() as session:
            message = await session.scalar(select(SmsMessage).where(SmsMessage.template == "magic_link_upload"))
        return message if message is not None and message.status != "pending" and message.twilio_sid else None

    message = await eventually(link_message, within=TAKEOVER_S, every=0.5)
    [body] = await texts_to(settings, customer.e164)  # one text, whichever point the worker died at
    token = body.split("/m/", 1)[1].split()[0]
    verify = await http.post(
        "/api/v1/portal/magic-links/verify",
        json={"token": token},
        headers={"X-Portal-Key": settings.portal_api_key.get_secret_value()},
    )
    assert verify.status_code == 200, verify.text  # the link she holds is the live one
    async with stores.postgres.connect() as conn:
        attempt = (await conn.execute(select(CarrierAttempt).where(CarrierAttempt.key == f"sms:{message.id}"))).one()
    assert attempt.sid == message.twilio_sid
    assert attempt.requests == (2 if kill_point == "before-create" else 1)
