"""Twilio voice webhooks and progressive dialling, on the real API and worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text, update
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler.agents.models import Agent
from dialler.calls.messages import call_workflow_id
from dialler.integrations.twilio_voice import sign
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.live_api import eventually
from workflows.call_session import CallSessionWorkflow

pytestmark = pytest.mark.e2e


async def reserved_session(http: httpx.AsyncClient, stores: Stores, replica_url: str) -> tuple[dict, dict]:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    return headers, offered


def status_form(call_sid: str, status: str, sequence: int) -> dict[str, str]:
    return {"CallSid": call_sid, "CallStatus": status, "SequenceNumber": str(sequence), "AccountSid": "AC0"}


async def test_status_webhook_needs_a_valid_signature_and_a_replay_changes_state_once(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    headers, offered = await reserved_session(http, stores, replica_url)
    workflow_id = offered["workflow_id"]
    handle = temporal_client.get_workflow_handle_for(CallSessionWorkflow.run, workflow_id)
    await handle.signal(
        CallSessionWorkflow.dial,
        __import__("dialler.calls.messages", fromlist=["DialRequest"]).DialRequest(1, browser_call_sid="CAbrowser"),
    )
    await eventually(lambda: _state(handle, "dialing"))
    path = f"/api/v1/webhooks/twilio/voice-status?wf={workflow_id}"
    url = stores.settings.public_base_url + path
    ringing = status_form("CAbrowser", "ringing", 1)

    forged = await http.post(path, data=ringing, headers={"X-Twilio-Signature": "bm90LXRoZS1zaWduYXR1cmU="})
    missing = await http.post(path, data=ringing)
    tampered = await http.post(
        path,
        data=ringing | {"CallStatus": "completed"},
        headers={"X-Twilio-Signature": sign(stores.settings, url, ringing)},
    )
    assert (forged.status_code, missing.status_code, tampered.status_code) == (403, 403, 403)
    assert (await handle.query(CallSessionWorkflow.view)).state == "dialing"  # nothing changed

    signed = {"X-Twilio-Signature": sign(stores.settings, url, ringing)}
    assert (await http.post(path, data=ringing, headers=signed)).status_code == 204
    assert (await http.post(path, data=ringing, headers=signed)).status_code == 204  # Twilio's retry
    answered = status_form("CAbrowser", "in-progress", 2)
    await http.post(path, data=answered, headers={"X-Twilio-Signature": sign(stores.settings, url, answered)})
    late = status_form("CAbrowser", "ringing", 3)  # out of order: must not move the call backwards
    await http.post(path, data=late, headers={"X-Twilio-Signature": sign(stores.settings, url, late)})

    await eventually(lambda: _state(handle, "in_progress"))
    signals = [
        e async for e in handle.fetch_history_events() if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    statuses = [e.workflow_execution_signaled_event_attributes.signal_name for e in signals]
    assert statuses.count("call_status") == 3  # ringing once (the replay was dropped), answered, late ringing
    assert (await handle.query(CallSessionWorkflow.view)).state == "in_progress"


async def _state(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return (await handle.query(CallSessionWorkflow.view)).state == state


async def test_progressive_next_call_without_the_agents_phone_ready_is_refused_and_nothing_is_dialled(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    """Progressive mode dials as the session starts: the agent's browser phone must be registered
    before the customer is dialled (Ofcom's 2 s by construction). Without it next-call is refused and
    nobody is leased or rung; with it the call goes, and a phone that drops before the answer still
    leaves the customer the information message, recorded abandoned with the 72 h lock."""
    emulator.script("*", behaviour="answer", answer_after_s=1.5, hangup_after_s=None)
    await queue_one_customer(stores, replica_url)
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == "priya@rmc.example").values(progressive_mode=True))
        await session.commit()
    headers = await start_available(http, "priya@rmc.example")  # her browser has not reported device-ready

    refused = await http.post("/api/v1/agents/me/next-call", headers=headers)

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "phone_not_ready" and "progressive" in error["message"], error
    assert await asyncio.to_thread(emulator.calls) == []  # nobody rung
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM call_sessions")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM contact_attempts")) == 0

    # Her phone registers: the call is placed. It drops before the customer answers: nobody to bridge to.
    assert (await http.post("/api/v1/voice/device-ready", headers=headers)).status_code == 204
    offered = await http.post("/api/v1/agents/me/next-call", headers=headers)
    assert offered.status_code == 200, offered.text
    assert (await http.delete("/api/v1/voice/device-ready", headers=headers)).status_code == 204
    user_id = offered.json()["customer"]["user_id"]
    handle = temporal_client.get_workflow_handle_for(CallSessionWorkflow.run, call_workflow_id(user_id))
    try:
        result = await asyncio.wait_for(handle.result(), 30)
    except TimeoutError:
        raise AssertionError(f"the session did not close: {await handle.query(CallSessionWorkflow.view)}") from None

    assert result.disposition == "no_outcome"
    [call] = await asyncio.to_thread(emulator.calls)  # the customer's leg alone: no agent was dialled
    timeline = await asyncio.to_thread(emulator.wait_ended, call["sid"])
    assert "RMC Claims" in " ".join(timeline.said())  # the information message
    assert "person_connected" not in timeline.kinds()  # no bridge
    async with stores.postgres.connect() as conn:
        attempt = (await conn.execute(text("SELECT abandoned, result FROM contact_attempts"))).one()
    assert tuple(attempt) == (True, "abandoned")
    not_before = await stores.redis.hget(queue_engine(stores).keys.not_before, str(user_id))
    assert float(not_before) >= (datetime.now(UTC) + timedelta(hours=71, minutes=59)).timestamp()
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"


async def test_a_completed_status_with_a_duration_marks_the_call_answered_when_in_progress_was_lost(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    """Twilio's statuses can arrive out of order or not at all: a final ``completed`` that lasted 42 s
    was answered, so the agent may record an outcome that needs an answered call."""
    from dialler.calls.messages import DialRequest

    headers, offered = await reserved_session(http, stores, replica_url)
    workflow_id = offered["workflow_id"]
    handle = temporal_client.get_workflow_handle_for(CallSessionWorkflow.run, workflow_id)
    await handle.signal(CallSessionWorkflow.dial, DialRequest(1, browser_call_sid="CAbrowser"))
    await eventually(lambda: _state(handle, "dialing"))
    path = f"/api/v1/webhooks/twilio/voice-status?wf={workflow_id}"
    url = stores.settings.public_base_url + path
    completed = status_form("CAbrowser", "completed", 3) | {"CallDuration": "42"}
    sent = await http.post(path, data=completed, headers={"X-Twilio-Signature": sign(stores.settings, url, completed)})
    assert sent.status_code == 204

    await eventually(lambda: _state(handle, "wrap_up"))
    assert (await handle.query(CallSessionWorkflow.view)).answered
    saved = await http.post(
        f"/api/v1/calls/{offered['session_id']}/outcome", json={"disposition": "not_interested"}, headers=headers
    )
    assert saved.status_code == 200, saved.text
    await handle.result()
    # A status for the closed session: acknowledged (Twilio would retry a 500 for a day).
    late = status_form("CAbrowser", "completed", 4) | {"CallDuration": "42"}
    again = await http.post(path, data=late, headers={"X-Twilio-Signature": sign(stores.settings, url, late)})
    assert again.status_code == 204
