"""Callback activities: the PostgreSQL mirror, the compliance check, and requeueing.

``prepare`` and ``transition`` are what CallbackWorkflow runs: one activity per step, each idempotent
(an upsert keyed by the run, a placement recomputed from fresh facts). ``mirror``, ``check_due`` and
``requeue`` are the same work split three ways, kept for workflow histories recorded before them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
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
from dialler.callbacks.models import LIVE_STATUSES, Callback
from dialler.compliance import facts as compliance_facts
from dialler.compliance import gate, gates
from dialler.customers.context import forget
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
        """The compliance gate for this booked call at ``at`` (the due time; None: now), on today's
        facts. A rule time will not open cancels the callback; a closed time (calling hours, the
        customer's nation's bank holiday, the cool-off after an abandoned call) moves it to the next
        allowed slot. Attempt limits and the gap give way to a time the customer asked for."""
        settings = self.stores.settings
        rules = gates.CallingRules.from_settings(settings)
        now = clock.now(settings)  # the compliance clock
        when = now if at is None else at + clock.offset(settings)
        found = await compliance_facts.load(
            replica=self.stores.replica,
            postgres=self.stores.postgres,
            user_ids=[user_id],
            now=now,
            cooloff=rules.abandoned_cooloff,
            booked_callback=True,
        )
        facts = found.get(user_id) or gate.ContactFacts(user_id=user_id, phone_e164=None, deleted=True)
        decision = gate.check(facts, channel=gate.Channel.VOICE, at=when, rules=rules)
        blocking = decision.blocking
        if blocking is None:
            return DueCheck("proceed")
        if decision.next_allowed_at is None:
            return DueCheck("cancel", blocking.explanation)
        nation_rules = rules.for_nation(facts.nation)
        slot = gates.next_allowed_slots(decision.next_allowed_at, nation_rules, 1)[0] - clock.offset(settings)
        return DueCheck("move", blocking.explanation, slot)

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
            return
        # The callback's own move to completed follows when its workflow takes the signal. Its copy
        # says so now: the call's close re-places the customer next, and a copy still live would put
        # them back at the top of the callbacks queue, to be rung again seconds after this call. A
        # cancel that reached the callback first still wins: its workflow writes the copy last.
        async with self.stores.postgres.begin() as conn:
            await conn.execute(
                update(Callback)
                .where(Callback.user_id == user_id, Callback.status.in_(LIVE_STATUSES))
                .values(status="completed", outcome=input.disposition)
            )
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [user_id])
