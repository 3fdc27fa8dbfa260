"""The callback's texts: a confirmation when booked, a reminder ``reminder_s`` before it is due, no
reminder after a cancel, and nothing to an opted-out number."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler.callbacks.messages import BookCallbackInput, CallbackTimings, CancelInput, callback_workflow_id
from dialler.callbacks.rules import calling_hours
from dialler.comms.models import SmsMessage
from dialler.compliance.models import OptOut
from dialler.runtime import Stores
from tests.support.live_api import eventually
from tests.support.replica_customers import add_customer
from workflows.callback import CallbackWorkflow


async def book(
    client: Client, stores: Stores, user_id: int, due: datetime, reminder_s: int, prepare_s: int = 300
) -> WorkflowHandle:
    return await client.start_workflow(
        CallbackWorkflow.run,
        BookCallbackInput(
            user_id=user_id,
            due_at=due,
            booked_by_agent_id=None,
            hours=calling_hours(stores.settings),
            timings=CallbackTimings(
                grace_s=600, expiry_s=7200, rebook_missed=False, reminder_s=reminder_s, prepare_s=prepare_s
            ),
        ),
        id=callback_workflow_id(user_id),
        task_queue=stores.settings.temporal_task_queue,
    )


async def texts(stores: Stores) -> list[SmsMessage]:
    async with stores.sessions() as session:
        return list((await session.scalars(select(SmsMessage).order_by(SmsMessage.id))).all())


async def test_confirmation_at_booking_and_reminder_on_time(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    customer = await add_customer(replica_writer, 1)
    due = datetime.now(UTC) + timedelta(seconds=8)

    handle = await book(temporal_client, stores, 1, due, reminder_s=4)

    async def two_texts() -> list[SmsMessage] | None:
        found = await texts(stores)
        return found if len(found) == 2 and all(m.twilio_sid for m in found) else None

    confirmation, reminder = await eventually(two_texts, within=12)
    assert confirmation.template == "callback_confirmation" and confirmation.created_at < due - timedelta(seconds=6)
    assert reminder.template == "callback_reminder"
    remind_at = due - timedelta(seconds=4)
    assert remind_at - timedelta(seconds=0.5) <= reminder.created_at <= remind_at + timedelta(seconds=2.5)
    sent = [m["body"] for m in await asyncio.to_thread(emulator.messages, customer.e164)]
    assert len(sent) == 2 and "your callback is booked for" in sent[0] and "reminder" in sent[1]
    await handle.signal(CallbackWorkflow.cancel, CancelInput(reason="test over"))


async def test_no_reminder_after_a_cancel(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    await add_customer(replica_writer, 1)
    due = datetime.now(UTC) + timedelta(seconds=8)
    handle = await book(temporal_client, stores, 1, due, reminder_s=5)
    await eventually(lambda: texts(stores))

    await handle.signal(CallbackWorkflow.cancel, CancelInput(reason="the customer called in"))
    assert await handle.result() == "cancelled"
    await asyncio.sleep(max(0.0, (due - timedelta(seconds=5) - datetime.now(UTC)).total_seconds()) + 1.5)

    assert [m.template for m in await texts(stores)] == ["callback_confirmation"]
    assert len(await asyncio.to_thread(emulator.messages)) == 1


async def test_nothing_is_texted_to_an_opted_out_number(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    customer = await add_customer(replica_writer, 1)
    async with stores.sessions() as session:
        session.add(OptOut(phone_e164=customer.e164, user_id=1, keyword="STOP"))
        await session.commit()
    due = datetime.now(UTC) + timedelta(seconds=6)

    # Prepared (and so cancelled: opted out) 1 s before due, after the reminder was due to go.
    handle = await book(temporal_client, stores, 1, due, reminder_s=3, prepare_s=1)

    async def two_blocked() -> list[SmsMessage] | None:
        found = await texts(stores)
        return found if len(found) == 2 and all(m.status == "blocked" for m in found) else None

    blocked = await eventually(two_blocked, within=10)
    assert [m.template for m in blocked] == ["callback_confirmation", "callback_reminder"]
    assert await asyncio.to_thread(emulator.messages) == []
    assert await handle.result() == "cancelled"  # and the callback itself never dials (opted out)
