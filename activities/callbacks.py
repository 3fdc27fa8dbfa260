"""Callback activities: the PostgreSQL mirror, the compliance check at due time, and requeueing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.client import Client, WorkflowHandle

from activities.queues import queue_engine, recompute
from dialler import clock
from dialler.callbacks.messages import (
    BookCallbackInput,
    CallbackTimings,
    CallingHours,
    CompleteInput,
    DueCheck,
    EnqueueInput,
    MirrorInput,
    RescheduleInput,
    SettleCallbackInput,
    callback_workflow_id,
)
from dialler.callbacks.models import Callback
from dialler.config import Settings
from dialler.customers.context import forget
from dialler.queues import gates
from dialler.queues.phones import normalise_phone
from dialler.runtime import Stores


def calling_hours(settings: Settings) -> CallingHours:
    return CallingHours(
        weekday=settings.weekday_hours,
        saturday=settings.saturday_hours,
        timezone=settings.calling_timezone,
        clock_offset_s=settings.clock_offset_s,
    )


def callback_timings(settings: Settings) -> CallbackTimings:
    return CallbackTimings(
        grace_s=settings.callback_grace_s,
        expiry_s=settings.callback_expiry_s,
        rebook_missed=settings.callback_rebook_missed,
        reminder_s=settings.callback_reminder_s,
    )


async def book_callback(client: Client, settings: Settings, booking: BookCallbackInput) -> WorkflowHandle:
    """Start the customer's callback, or move the live one to the new time (one live per customer)."""
    from workflows.callback import CallbackWorkflow

    booking = BookCallbackInput(
        **{**booking.__dict__, "hours": calling_hours(settings), "timings": callback_timings(settings)}
    )
    # Signal-with-start: starts the customer's callback, or moves the live one, without waiting for a
    # worker (an API request must not hang while workers restart). The time was validated by the caller.
    return await client.start_workflow(
        CallbackWorkflow.run,
        booking,
        id=callback_workflow_id(booking.user_id),
        task_queue=settings.temporal_task_queue,
        start_signal=REBOOK_SIGNAL,
        start_signal_args=[RescheduleInput(booking.due_at, by_agent_id=booking.booked_by_agent_id)],
    )


REBOOK_SIGNAL = "rebook"  # CallbackWorkflow.rebook; signal-with-start takes the signal by name


class CallbackActivities:
    def __init__(self, stores: Stores, client: Client) -> None:
        self.stores = stores
        self.client = client
        self.engine = queue_engine(stores)

    @activity.defn
    async def mirror(self, input: MirrorInput) -> None:
        values = {
            "workflow_id": input.workflow_id,
            "workflow_run_key": input.run_key,
            "user_id": input.user_id,
            "booked_by_agent_id": input.booked_by_agent_id,
            "owner_agent_id": input.owner_agent_id,
            "source": input.source,
            "due_at": input.due_at,
            "status": input.status,
            "reason": input.reason,
            "outcome": input.outcome,
        }
        statement = insert(Callback).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["workflow_run_key"],
            set_={k: statement.excluded[k] for k in ("owner_agent_id", "due_at", "status", "reason", "outcome")}
            | {"updated_at": datetime.now(UTC)},
        )
        async with self.stores.postgres.begin() as conn:
            await conn.execute(statement)
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [input.user_id])

    @activity.defn
    async def check_due(self, user_id: int) -> DueCheck:
        """The compliance gates at due time: the rules of now, not of the booking."""
        settings = self.stores.settings
        async with self.stores.replica.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT status, phone_number, deleted_at IS NOT NULL AS deleted FROM users WHERE id = :id"),
                    {"id": user_id},
                )
            ).one_or_none()
        if row is None or row.deleted:
            return DueCheck("cancel", "the customer record is deleted")
        if str(row.status).lower() == "deceased":
            return DueCheck("cancel", "the customer is deceased")
        phone = normalise_phone(row.phone_number).e164
        if phone is None:
            return DueCheck("cancel", "no callable phone number")
        async with self.stores.postgres.connect() as conn:
            listed = await conn.scalar(text("SELECT 1 FROM do_not_call WHERE phone_e164 = :p"), {"p": phone})
            opted = await conn.scalar(text("SELECT 1 FROM opt_outs WHERE phone_e164 = :p"), {"p": phone})
        if listed:
            return DueCheck("cancel", "the number is on the do-not-call list")
        if opted:
            return DueCheck("cancel", "the customer opted out (SMS STOP)")
        rules = gates.CallingRules.from_settings(settings)
        now = clock.now(settings)
        window = gates.calling_window(now, rules)
        if not window.allowed:
            slot = gates.next_allowed_slots(now, rules, 1)[0] - clock.offset(settings)  # back to real time
            return DueCheck("move", window.explanation, slot)
        return DueCheck("proceed")

    @activity.defn
    async def requeue(self, input: EnqueueInput) -> None:
        await recompute(self.stores, self.engine, [input.user_id])
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [input.user_id])

    @activity.defn
    async def book(self, booking: BookCallbackInput) -> None:
        await book_callback(self.client, self.stores.settings, booking)

    @activity.defn
    async def settle(self, input: SettleCallbackInput) -> None:
        """Tell the customer's live callback that a call settled it (no live callback: nothing to do)."""
        from temporalio.service import RPCError

        from workflows.callback import CallbackWorkflow

        user_id = input.user_id
        handle = self.client.get_workflow_handle_for(CallbackWorkflow.run, callback_workflow_id(user_id))
        try:
            await handle.signal(CallbackWorkflow.complete, CompleteInput(input.disposition, input.call_session_id))
        except RPCError as exc:  # not found / already closed: the callback is not live any more
            activity.logger.info("no live callback for user %s to complete: %s", user_id, exc.status)
