"""A dial the compliance gate refuses at the last moment: on the real API, worker, Temporal,
PostgreSQL, Redis and MariaDB. The refusal is a record with its reasons (not only a log line), the
supervisor's explain and the agent's call panel show the same reasons and the next allowed time, no
call is placed and no attempt is counted."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler import clock
from dialler.queues.phones import normalise_phone
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.histories import record_history
from tests.support.live_api import eventually, login

pytestmark = pytest.mark.e2e


async def test_a_dial_refused_at_the_last_moment_is_recorded_and_explained(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    temporal_client: Client,
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]

    # After the offer, before the dial: another customer with the same number had an abandoned call
    # an hour ago. The 72 h lock is on the number; the old dial-time check never looked at it.
    async with stores.replica.connect() as conn:
        raw = await conn.scalar(text("SELECT phone_number FROM users WHERE id = :id"), {"id": user_id})
    phone = normalise_phone(raw).e164
    assert phone is not None
    abandoned_at = clock.now(stores.settings) - timedelta(hours=1)
    async with stores.postgres.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO contact_attempts (user_id, phone_e164, channel, result, abandoned, attempted_at)"
                " VALUES (999999, :p, 'voice', 'abandoned', true, :at)"
            ),
            {"p": phone, "at": abandoned_at},
        )

    assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202

    async def refused() -> dict | None:
        call = (await http.get(f"/api/v1/calls/{session_id}", headers=headers)).json()
        return call if call.get("refusal") else None

    call = await eventually(refused)
    # The agent's call panel: why not now, and from when.
    assert call["end_reason"] == "failed"
    reasons = call["refusal"]["reasons"]
    assert reasons and reasons[0].startswith("abandoned_cooloff: abandoned call")
    next_allowed = datetime.fromisoformat(call["refusal"]["next_allowed_at"])
    assert next_allowed >= abandoned_at + timedelta(hours=72)
    assert "+44" not in str(call) and phone[3:] not in str(call)  # the number is never shown

    # The supervisor's explain: the same reasons, from the same record, with the facts it saw.
    supervisor = await login(http, "sam@rmc.example")
    explained = (await http.get(f"/api/v1/queues/customers/{user_id}/explain", headers=supervisor)).json()
    last = explained["decisions"][0]
    assert last["path"] == "dial" and last["allowed"] is False and last["call_session_id"] == session_id
    assert last["blocking_rule"] == "abandoned_cooloff" and last["reasons"] == reasons
    assert datetime.fromisoformat(last["next_allowed_at"]) == next_allowed
    assert "abandoned_cooloff" in last["rules_checked"] and "max_attempts_per_day" in last["rules_checked"]
    # PECR 21A: why this customer may be called at all, kept with the dial.
    assert last["basis"] == "service call to an existing client about their own claim: a signature it needs"
    versions = last["facts_versions"]
    assert versions["replica_users_updated_at"] is not None and versions["attempts_7d"] == 0
    assert versions["nation"] in ("ENG", "SCT", "NIR", "ANY") and "3/day" in versions["rules"]
    assert explained["callable_now"] is False and explained["why_not_now"][0].startswith("abandoned_cooloff")

    # No call was placed, and a refused dial is not an attempt.
    assert all(c["to"] != phone for c in await asyncio.to_thread(emulator.calls))
    async with stores.postgres.connect() as conn:
        attempts = await conn.scalar(text("SELECT count(*) FROM contact_attempts WHERE user_id = :u"), {"u": user_id})
        logged = await conn.scalar(
            text("SELECT count(*) FROM compliance_decisions WHERE user_id = :u AND NOT allowed"), {"u": user_id}
        )
    assert attempts == 0 and logged == 1

    # Nothing to wrap up: no outcome fits a call that never rang ("no answer" would text "we tried to
    # call you"). The session closes by itself, the agent is free, the customer waits for the rules.
    handle = temporal_client.get_workflow_handle(offered["workflow_id"])
    closed = await asyncio.wait_for(handle.result(), 30)
    assert closed["disposition"] == "no_outcome"
    await record_history(handle, "call-session-unplaced-dial-closed", stores.settings)  # RECORD_HISTORY_TO=<dir>
    presence = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()
    assert presence["state"] == "available"
    engine = queue_engine(stores)
    assert await engine.position(user_id) is not None
    held_until = await stores.redis.hget(engine.keys.not_before, str(user_id))
    assert held_until is not None and float(held_until) == pytest.approx(next_allowed.timestamp(), abs=1)
    async with stores.postgres.connect() as conn:
        texts = await conn.scalar(text("SELECT count(*) FROM sms_messages"))
        attempts = await conn.scalar(text("SELECT count(*) FROM contact_attempts WHERE user_id = :u"), {"u": user_id})
    assert texts == 0 and attempts == 0
