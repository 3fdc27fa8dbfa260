"""The retention purge as it runs in production: the worker's ``retention-purge`` Schedule starts
RetentionWorkflow, which erases SMS bodies and notes past their period and leaves newer ones; each
run is recorded; writing the schedule again (new periods) replaces it rather than adding one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack import services
from dialler.audit.models import AuditEntry
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CallSession, CustomerNote
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.customers.retention import RetentionInput
from dialler.runtime import Stores
from dialler.security.codec import data_converter
from tests.support.live_api import eventually
from workers.registry import PURGE_SCHEDULE_ID, ensure_schedules
from workers.worker import build_worker
from workflows.retention import RetentionWorkflow

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


async def test_periods_are_measured_on_the_workflows_clock_with_time_skipping(stores: Stores, telephony) -> None:  # type: ignore[no-untyped-def]
    # The time-skipping test server has no Schedules (the schedule itself is tested above on the dev
    # server); what time skipping shows is the rule over time: a text written today is kept by today's
    # run and erased by a run two years on, with nobody touching the data in between.
    async with stores.sessions() as session:
        conversation = SmsConversation(user_id=8, phone_e164="+447700900123")
        session.add(conversation)
        await session.flush()
        session.add(
            SmsMessage(
                conversation_id=conversation.id,
                direction="outbound",
                body=NEW_TEXT,
                status="sent",
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
        await session.commit()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(services.VENV_BIN / "temporal-test-server"),
        data_converter=data_converter(stores.settings),
    )
    task_queue = "skip-" + stores.settings.temporal_task_queue
    periods = RetentionInput(sms_body_days=730, notes_days=730)
    try:
        async with build_worker(env.client, stores, telephony, task_queue=task_queue):
            today = await env.client.execute_workflow(
                RetentionWorkflow.run, periods, id=f"purge-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
            await env.sleep(timedelta(days=731))
            later = await env.client.execute_workflow(
                RetentionWorkflow.run, periods, id=f"purge-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
    finally:
        await env.shutdown()

    assert today.sms_bodies == 0 and later.sms_bodies == 1
    assert later.as_of - today.as_of >= timedelta(days=731)
    async with stores.sessions() as session:
        assert set((await session.scalars(select(SmsMessage.body))).all()) == {"[erased]"}
        runs = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "retention.purged").order_by(AuditEntry.id)
            )
        ).all()
    assert [r.details["sms_bodies"] for r in runs] == [0, 1]  # each run recorded
