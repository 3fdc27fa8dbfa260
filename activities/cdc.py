"""The change-event consumer's activity: receive a batch (long poll), apply it, delete it.

One activity does the three steps so that message bodies and receipt handles never enter the
workflow's history. It is safe to retry at any point: applying re-places customers from the
replica's current rows (idempotent), and a message is deleted only after it was applied. A message
that cannot be applied is left alone: SQS redelivers it, and after maxReceiveCount its redrive
policy moves it to the dead-letter queue; the reason is logged each time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from dialler.cdc import apply, metrics
from dialler.cdc.messages import BatchResult, IngestInput
from dialler.cdc.records import ChangeRecord, InvalidRecord, parse_message_body
from dialler.customers.context import forget
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.reports.conversions import record_conversions
from dialler.runtime import Stores

log = logging.getLogger("dialler.cdc")
MAX_MESSAGES = 10  # SQS's maximum per receive


class CdcActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.engine = queue_engine(stores)
        self._queue_urls: dict[str, str] = {}

    @activity.defn
    async def ingest_batch(self, input: IngestInput) -> BatchResult:
        sqs = self.stores.sqs()
        url = await self._queue_url(input.queue_name)
        received = await asyncio.to_thread(
            sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=input.wait_s,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = received.get("Messages", [])
        if not messages:
            return BatchResult()
        records: list[ChangeRecord] = []
        accepted: list[dict[str, Any]] = []
        refused = 0
        for message in messages:
            try:
                parsed = parse_message_body(message["Body"])
                apply.check(parsed)
            except InvalidRecord as exc:
                refused += 1
                count = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
                log.warning("change event %s refused (receive %s): %s", message["MessageId"], count, exc.reason)
                continue
            records += parsed
            accepted.append(message)

        settings = self.stores.settings
        fresh = await apply.fresh_records(self.stores.redis, settings.redis_prefix, records)
        await apply.ensure_replica_caught_up(self.stores.replica, fresh)
        # Before the versions are remembered: a batch retried after a failure here records them then.
        await record_conversions(self.stores.postgres, self.stores.replica, fresh)
        users = sorted(await apply.touched_users(self.stores.replica, fresh))
        if users:
            await recompute(self.stores, self.engine, users)
            await forget(self.stores.redis, settings.redis_prefix, users)  # agents see the fresh data
        await apply.remember_versions(self.stores.redis, settings.redis_prefix, fresh)
        now = datetime.now(UTC)
        await metrics.observe(
            self.stores.redis,
            settings.redis_prefix,
            latencies=[max(0.0, (now - r.committed_at).total_seconds()) for r in fresh],
            invalid=refused,
        )
        if accepted:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(accepted)]
            await asyncio.to_thread(sqs.delete_message_batch, QueueUrl=url, Entries=entries)
        return BatchResult(
            messages=len(messages),
            records=len(records),
            customers=len(users),
            refused=refused,
            stale=len(records) - len(fresh),
        )

    @activity.defn
    async def dlq_depth(self, queue_name: str) -> int:
        """Messages waiting in the dead-letter queue (for the dashboard and /metrics)."""
        sqs = self.stores.sqs()
        url = await self._queue_url(self.stores.settings.cdc_dlq_name)
        attributes = await asyncio.to_thread(
            sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        depth = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        await self.stores.redis.set(f"{self.stores.settings.redis_prefix}:cdc:dlq_depth", depth)
        return depth

    async def _queue_url(self, name: str) -> str:
        if name not in self._queue_urls:
            found = await asyncio.to_thread(self.stores.sqs().get_queue_url, QueueName=name)
            self._queue_urls[name] = found["QueueUrl"]
        return self._queue_urls[name]
