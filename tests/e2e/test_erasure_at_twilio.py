"""Erasure reaches Twilio (the emulator): an admin's erasure redacts the customer's text bodies there and
keeps their call recording while a claim is open, reporting it as held with no erasable date; once the
claims ended over 12 months ago, erasing again deletes the recording at Twilio and marks it deleted, and
the audit rows record what was erased at Twilio and what was kept and why."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker
from twilio.base.exceptions import TwilioRestException

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler.audit.models import AuditEntry
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.config import Settings
from dialler.integrations.twilio import twilio_client
from dialler.recordings.service import months_before
from dialler.runtime import Stores
from tests.support.live_api import eventually, login
from tests.support.recordings import recorded_call

pytestmark = pytest.mark.e2e

BODY = "Hi, your claim pack for Black Horse is ready"


@pytest.fixture
def settings(settings: Settings, twilio_emulator: EmulatorClient, emulator: EmulatorClient) -> Settings:
    """This test's settings with the product's Twilio client pointed at the emulator."""
    return settings.model_copy(update={"twilio_api_base_url": twilio_emulator.url})


async def test_erasure_redacts_texts_at_twilio_and_deletes_recordings_only_after_their_period(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await seed_replica(replica_url, users=20, seed=5)
    user_id = 3
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE claims SET status = 'in_progress', deleted_at = NULL WHERE user_id = :u"), {"u": user_id}
        )
    twilio = twilio_client(stores.settings)
    sent = await asyncio.to_thread(
        lambda: twilio.messages.create(to="+447700900123", from_=stores.settings.caller_id, body=BODY)
    )
    async with stores.sessions() as session:
        conversation = SmsConversation(user_id=user_id, phone_e164="+447700900123")
        session.add(conversation)
        await session.flush()
        session.add(
            SmsMessage(
                conversation_id=conversation.id,
                direction="outbound",
                body=BODY,
                status="delivered",
                twilio_sid=sent.sid,
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
        await session.commit()
    await recorded_call(stores, user_id)

    async def recording_sid() -> str | None:
        async with stores.postgres.connect() as conn:
            return await conn.scalar(text("SELECT sid FROM call_recordings WHERE user_id = :u"), {"u": user_id})

    sid = await eventually(recording_sid, within=20)
    ada = await login(http, "ada@rmc.example")

    first = await http.post(f"/api/v1/customers/{user_id}/erasure", headers=ada)

    assert first.status_code == 200, first.text
    report = first.json()
    assert report["done"] and report["erased"]["twilio_message_bodies"] == 1
    assert report["erased"]["sms_message_bodies"] == 1 and report["erased"]["call_recordings"] == 0
    assert (await asyncio.to_thread(lambda: twilio.messages(sent.sid).fetch())).body == ""  # redacted at Twilio
    [kept] = [k for k in report["kept"] if k["what"] == "call_recordings"]
    assert kept["recordings"] == [{"sid": sid, "erasable_from": None}] and "CMCOB" in kept["why"]
    await asyncio.to_thread(lambda: twilio.recordings(sid).fetch())  # still held at Twilio

    # The claims ended 13 months ago: the recording is past its period, and goes on the next erasure.
    ended = months_before(datetime.now(UTC), 13) - timedelta(days=1)
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE claims SET status = 'withdrawn', updated_at = :at WHERE user_id = :u"),
            {"at": ended.replace(tzinfo=None), "u": user_id},
        )
    second = (await http.post(f"/api/v1/customers/{user_id}/erasure", headers=ada)).json()

    assert second["erased"]["call_recordings"] == 1
    assert not [k for k in second["kept"] if k["what"] == "call_recordings"]
    with pytest.raises(TwilioRestException):  # gone at Twilio
        await asyncio.to_thread(lambda: twilio.recordings(sid).fetch())
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT deleted_at FROM call_recordings WHERE sid = :s"), {"s": sid})
    async with stores.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "customer.erased").order_by(AuditEntry.id)
            )
        ).all()
    assert [a.details["erased"]["call_recordings"] for a in audit] == [0, 1]
    assert audit[0].details["kept"][-1]["recordings"] == [{"sid": sid, "erasable_from": None}]
    assert BODY not in str([a.details for a in audit])
