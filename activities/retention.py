"""The retention purge's activity (dialler.customers.retention)."""

from __future__ import annotations

from temporalio import activity

from dialler.customers.retention import PurgeInput, RetentionReport, purge
from dialler.runtime import Stores


class RetentionActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def purge_expired(self, input: PurgeInput) -> RetentionReport:
        async with self.stores.sessions() as session:
            return await purge(session, input)
