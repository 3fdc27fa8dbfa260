"""Inbound-SMS fan-out activities: the queue side of an opt-out or opt-in. Idempotent: removing a
customer who is in no queue, or placing one afresh by the rules, can run any number of times."""

from __future__ import annotations

from temporalio import activity

from dialler import clock
from dialler.compliance.reviews import StopReviewInput, open_for_stop
from dialler.customers.context import forget
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores


class InboundSmsActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def leave_queues(self, user_ids: list[int]) -> None:
        """Opted out: out of every queue (a leased customer's lease restores nothing) and no cached context."""
        await queue_engine(self.stores).remove_many(user_ids)
        await forget(self.stores.redis, self.stores.settings.redis_prefix, user_ids)

    @activity.defn
    async def replace_in_queues(self, user_ids: list[int]) -> None:
        """Opted back in: placed again by the queue rules (which read the opt-out table afresh)."""
        await recompute(self.stores, queue_engine(self.stores), user_ids)
        await forget(self.stores.redis, self.stores.settings.redis_prefix, user_ids)

    @activity.defn
    async def open_stop_reviews(self, input: StopReviewInput) -> int:
        """A STOP on the day we called: a review item for the compliance desk (one per call session)."""
        settings = self.stores.settings
        async with self.stores.postgres.begin() as conn:
            return await open_for_stop(
                conn,
                message_id=input.message_id,
                user_ids=input.user_ids,
                day_start_of=lambda at: clock.day_start(settings, at),
            )
