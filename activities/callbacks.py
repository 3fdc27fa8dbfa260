"""Callback activities: the PostgreSQL mirror, the compliance check, and requeueing.

``prepare`` and ``transition`` are what CallbackWorkflow runs: one activity per step, each idempotent
(an upsert keyed by the run, a placement recomputed from fresh facts). ``mirror``, ``check_due`` and
``requeue`` are the same work split three ways, kept for workflow histories recorded before them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.client import Client

from dialler import clock
from dialler.callbacks.messages import (
    REQUEUE_IF_MISSING,
    BookCallbackInput,
    CompleteInput,
    DueCheck,
    EnqueueInput,
    MirrorInput,
    PrepareInput,
    SettleCallbackInput,
    TransitionInput,
)
from dialler.callbacks.models import Callback
from dialler.customers.context import forget
from dialler.queues import gates
from dialler.queues.phones import normalise_phone
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from workflows.callback_client import book_callback, complete_callback


class CallbackActivities:
    def __init__(self, stores: Stores, client: Client) -> None:
        self.stores = stores
        self.client = client
        self.engine = queue_engine(stores)

    @activity.defn
    async def prepare(self, input: PrepareInput) -> DueCheck:
        """Ahead of the due time: the compliance gates for that time, then the customer into the
        callbacks queue, callable from ``due_at`` (placement's prepare window)."""
        check = await self._check(input.user_id, at=input.due_at)
        if check.action == "proceed":
            await self._requeue(input.user_id)
        return check

    @activity.defn
    async def transition(self, input: TransitionInput) -> None:
        """A status change: the mirror row first (placement reads it), then the queue placement.

        ``REQUEUE_IF_MISSING`` (due and open, where the prepared queue entry already says everything)
        recomputes only a customer who is neither in the callbacks queue nor leased: one Redis read at
        the deadline instead of a recompute, and still a repair if the preparation left them out."""
        user_id = input.mirror.user_id
        await self._mirror(input.mirror)
        if input.requeue != REQUEUE_IF_MISSING or await self._missing_from_callbacks(user_id):
            await recompute(self.stores, self.engine, [user_id])
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [user_id])

    @activity.defn
    async def mirror(self, input: MirrorInput) -> None:
        await self._mirror(input)
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [input.user_id])

    @activity.defn
    async def check_due(self, user_id: int) -> DueCheck:
        """The compliance gates at due time: the rules of now, not of the booking."""
        return await self._check(user_id, at=None)

    @activity.defn
    async def requeue(self, input: EnqueueInput) -> None:
        await self._requeue(input.user_id)

    async def _mirror(self, input: MirrorInput) -> None:
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

    async def _missing_from_callbacks(self, user_id: int) -> bool:
        position = await self.engine.position(user_id)
        if position is not None and position[0] == "callbacks":
            return False
        missing = await self.engine.lease_of(user_id) is None
        if missing:
            activity.logger.warning("user %s is neither in the callbacks queue nor leased: placing afresh", user_id)
        return missing

    async def _requeue(self, user_id: int) -> None:
        await recompute(self.stores, self.engine, [user_id])
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [user_id])

    async def _check(self, user_id: int, *, at: datetime | None) -> DueCheck:
        """The rules of now (record, do-not-call, opt-out) and the calling window at ``at`` (the due
        time; None: now). A time outside calling hours moves to the next allowed slot."""
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
        when = clock.now(settings) if at is None else at + clock.offset(settings)  # the compliance clock
        window = gates.calling_window(when, rules)
        if not window.allowed:
            slot = gates.next_allowed_slots(when, rules, 1)[0] - clock.offset(settings)  # back to real time
            return DueCheck("move", window.explanation, slot)
        return DueCheck("proceed")

    @activity.defn
    async def book(self, booking: BookCallbackInput) -> None:
        await book_callback(self.client, self.stores.settings, booking)

    @activity.defn
    async def settle(self, input: SettleCallbackInput) -> None:
        """Tell the customer's live callback that a call settled it (no live callback: nothing to do)."""
        user_id = input.user_id
        live = await complete_callback(self.client, user_id, CompleteInput(input.disposition, input.call_session_id))
        if not live:  # not found / already closed: the callback is not live any more
            activity.logger.info("no live callback for user %s to complete", user_id)
