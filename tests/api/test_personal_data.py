"""A customer's data rights through the API, for admins: the subject-access export holds everything
the dialler has about them; erasure blanks texts, notes and reasons and drops unused links and the
cached context, keeps the contact evidence, suppression and recordings (with the date a recording
becomes erasable, from the replica's claims) and audits both without contents."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from dialler.agents.models import Role
from dialler.audit.models import AuditEntry
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt, CustomerNote
from dialler.comms.models import MagicLink, SmsConversation, SmsMessage
from dialler.compliance.models import OptOut
from dialler.customers.context import cache_key
from dialler.recordings.models import CallRecording
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs

USER = 4242
PHONE = "+447700900123"
NOTE = "Mrs Tregothnan is recovering from surgery, call after 6pm"
SMS = "Hi Philippa, your claim pack is ready"


async def a_customer_with_history(stores: Stores, replica_writer: AsyncEngine) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    session_id = uuid.uuid4()
    async with stores.sessions() as session:
        session.add(
            CallSession(
                id=session_id,
                workflow_id=f"call-{USER}",
                user_id=USER,
                queue="unsigned",
                phone_e164=PHONE,
                status="closed",
                twilio_call_sid="CA" + "1" * 32,
                started_at=now,
                closed_at=now,
            )
        )
        await session.flush()
        session.add(
            CallOutcome(call_session_id=session_id, user_id=USER, disposition="callback", notes=NOTE, recorded_at=now)
        )
        session.add(
            ContactAttempt(
                user_id=USER, phone_e164=PHONE, call_session_id=session_id, result="answered", attempted_at=now
            )
        )
        session.add(CustomerNote(user_id=USER, body=NOTE))
        session.add(
            Callback(
                workflow_id=f"callback-{USER}",
                workflow_run_key="r1",
                user_id=USER,
                due_at=now + timedelta(days=1),
                status="cancelled",
                reason=NOTE,
            )
        )
        conversation = SmsConversation(user_id=USER, phone_e164=PHONE)
        session.add(conversation)
        await session.flush()
        session.add(
            SmsMessage(
                conversation_id=conversation.id, direction="outbound", body=SMS, status="delivered", created_at=now
            )
        )
        session.add(
            MagicLink(
                token_hash="a" * 64,
                user_id=USER,
                purpose="sign",
                created_at=now,
                expires_at=now + timedelta(days=1),
                note=NOTE,
            )
        )
        session.add(OptOut(phone_e164=PHONE, user_id=USER, keyword="STOP"))
        session.add(
            CallRecording(
                sid="RE" + "1" * 32,
                call_sid="CA" + "1" * 32,
                call_session_id=session_id,
                user_id=USER,
                claim_ids=[1],
                status="completed",
                created_at=now,
                updated_at=now,
            )
        )
        await session.commit()
    async with replica_writer.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO claims (id, user_id, lender, type, status, created_at, updated_at) VALUES "
                "(1, :u, 'Northern Finance', 'motor_finance', 'won', '2026-01-01', '2026-03-01 10:00:00')"
            ),
            {"u": USER},
        )
    await stores.redis.set(cache_key(stores.settings.redis_prefix, USER), json.dumps({"notes": [NOTE]}))


async def test_subject_access_then_erasure_through_the_api(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    worker: Worker,
) -> None:
    await a_customer_with_history(stores, replica_writer)
    admin = await login_as(Role.ADMIN)
    supervisor = await login_as(Role.SUPERVISOR)
    base = f"/api/v1/customers/{USER}"

    assert (await client.get(f"{base}/subject-access", headers=supervisor.headers)).status_code == 403
    export = (await client.get(f"{base}/subject-access", headers=admin.headers)).json()
    assert export["call_outcomes"][0]["notes"] == NOTE and export["notes"][0]["body"] == NOTE
    assert export["sms"] == {"phone_e164": PHONE, "messages": [export["sms"]["messages"][0]]}
    assert export["sms"]["messages"][0]["body"] == SMS
    assert export["callbacks"][0]["reason"] == NOTE and export["magic_links"][0]["note"] == NOTE
    assert export["opt_outs"][0]["phone_e164"] == PHONE and export["contact_attempts"][0]["phone_e164"] == PHONE
    assert "token_hash" not in json.dumps(export)

    assert (await client.post(f"{base}/erasure", headers=supervisor.headers)).status_code == 403
    erased = await client.post(f"{base}/erasure", headers=admin.headers)
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["done"] and report["workflow_id"] == f"erasure-{USER}"  # an ErasureWorkflow did it
    assert report["erased"] == {
        "sms_message_bodies": 1,
        "call_notes": 1,
        "customer_notes": 1,
        "callback_reasons": 1,
        "magic_link_notes": 1,
        "unused_magic_links": 1,
        "twilio_message_bodies": 0,  # the text has no Twilio sid: never sent through Twilio
        "call_recordings": 0,
    }
    kept = {k["what"]: k for k in report["kept"]}
    assert set(kept) == {"contact_attempts", "call_sessions", "opt_outs", "call_recordings"}
    assert kept["call_recordings"]["erasable_from"] == "2027-03-01"  # 12 months after the claim was won
    assert kept["call_recordings"]["recordings"] == [{"sid": "RE" + "1" * 32, "erasable_from": "2027-03-01"}]
    assert "CMCOB" in kept["call_recordings"]["why"]

    after = (await client.get(f"{base}/subject-access", headers=admin.headers)).json()
    assert NOTE not in json.dumps(after) and SMS not in json.dumps(after)
    assert after["opt_outs"] and after["contact_attempts"]  # suppression and evidence kept
    assert await stores.redis.get(cache_key(stores.settings.redis_prefix, USER)) is None

    async with stores.sessions() as session:
        audit = (
            await session.scalars(select(AuditEntry).where(AuditEntry.subject_id == str(USER)).order_by(AuditEntry.id))
        ).all()
    assert [a.action for a in audit] == ["customer.subject_access", "customer.erased", "customer.subject_access"]
    assert all(a.actor_agent_id == admin.agent.id for a in audit)
    assert NOTE not in json.dumps([a.details for a in audit]) and SMS not in json.dumps([a.details for a in audit])

    again = (await client.post(f"{base}/erasure", headers=admin.headers)).json()
    assert set(again["erased"].values()) == {0}  # idempotent
