"""The retention purge as it runs in production: the worker's ``retention-purge`` Schedule starts
RetentionWorkflow, which erases SMS bodies and notes past their period and leaves newer ones; each
run is recorded; writing the schedule again (new periods) replaces it rather than adding one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from dialler.audit.models import AuditEntry
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CallSession, CustomerNote
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.customers.retention import RetentionInput
from dialler.runtime import Stores
from tests.support.live_api import eventually
from workers.registry import PURGE_SCHEDULE_ID, ensure_schedules

OLD_TEXT, NEW_TEXT = "Hi Philippa, old news", "Hi Philippa, fresh news"
OLD_NOTE, NEW_NOTE = "call on 07700 900123 (old)", "call on 07700 900123 (new)"


async def texts_and_notes(stores: Stores) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    three_years_ago = now - timedelta(days=3 * 365)
    async with stores.sessions() as session:
        conversation = SmsConversation(user_id=7, phone_e164="+447700900123")
        session.add(conversation)
        await session.flush()
        for body, at in ((OLD_TEXT, three_years_ago), (NEW_TEXT, now)):
            session.add(
                SmsMessage(
                    conversation_id=conversation.id, direction="outbound", body=body, status="sent", created_at=at
                )
            )
            session.add(CustomerNote(user_id=7, body=OLD_NOTE if at == three_years_ago else NEW_NOTE, created_at=at))
            call = uuid.uuid4()
            session.add(
                CallSession(
                    id=call,
                    workflow_id="call-7",
                    user_id=7,
                    queue="unsigned",
                    phone_e164="+447700900123",
                    status="closed",
                    started_at=at,
                    closed_at=at,
                )
            )
            await session.flush()
            session.add(
                CallOutcome(
                    call_session_id=call,
                    user_id=7,
                    disposition="busy",
                    notes=OLD_NOTE if at == three_years_ago else NEW_NOTE,
                    recorded_at=at,
                )
            )
        session.add(
            Callback(
                workflow_id="callback-7",
                workflow_run_key="old",
                user_id=7,
                due_at=three_years_ago,
                status="cancelled",
                reason=OLD_NOTE,
            )
        )
        await session.commit()


async def test_the_daily_schedule_purges_what_is_past_its_period_and_records_the_run(
    temporal_client: Client, worker: Worker, stores: Stores
) -> None:
    await texts_and_notes(stores)
    settings = stores.settings
    await ensure_schedules(temporal_client, settings)
    await ensure_schedules(temporal_client, settings.model_copy(update={"retention_notes_days": 365}))
    handle = temporal_client.get_schedule_handle(PURGE_SCHEDULE_ID)
    try:
        described = await handle.describe()
        [written] = await temporal_client.data_converter.decode(
            described.schedule.action.args,  # type: ignore[attr-defined, arg-type]
            [RetentionInput],
        )
        assert written == RetentionInput(sms_body_days=730, notes_days=365)
        await handle.trigger()

        async def recorded() -> list[AuditEntry]:
            async with stores.sessions() as session:
                return list(
                    (await session.scalars(select(AuditEntry).where(AuditEntry.action == "retention.purged"))).all()
                )

        [run] = await eventually(recorded, within=20)
    finally:
        await handle.delete()

    assert {k: run.details[k] for k in ("sms_bodies", "call_notes", "customer_notes", "callback_reasons")} == {
        "sms_bodies": 1,
        "call_notes": 1,
        "customer_notes": 1,
        "callback_reasons": 1,
    }
    async with stores.sessions() as session:
        bodies = set((await session.scalars(select(SmsMessage.body))).all())
        outcome_notes = set((await session.scalars(select(CallOutcome.notes))).all())
        notes = set((await session.scalars(select(CustomerNote.body))).all())
        reasons = set((await session.scalars(select(Callback.reason))).all())
    assert bodies == {"[erased]", NEW_TEXT}
    assert outcome_notes == {None, NEW_NOTE} and notes == {NEW_NOTE} and reasons == {None}
