"""The change-event consumer's activity: receive a batch (a long poll, then more receives while the
queue has a backlog, up to ``MAX_RECEIVES`` × 10 messages or ``MAX_BATCH_RECORDS`` records), apply it
(``dialler.cdc.apply.apply_records``: one recompute per customer however many of their rows changed),
delete it.

One activity does the three steps so that message bodies and receipt handles never enter the
workflow's history. It is safe to retry at any point: applying re-places customers from the
replica's current rows (idempotent), and a message is deleted only after it was applied.

Transient is not poison. SQS counts receives, and after ``maxReceiveCount`` its redrive policy moves
a message to the dead-letter queue, whatever the reason it was not deleted. So an outage of the
replica, PostgreSQL or Redis must not cost receives:

- the dependencies are checked *before* receiving: while one is down nothing is received (the
  activity fails and Temporal retries it with back-off), so no receive is counted;
- a dependency that fails after the receive is retried in the activity with back-off, the messages'
  visibility extended meanwhile, so that they are not received again;
- records are applied one by one when the batch as a whole fails for a reason that is not
  transient, so one bad record cannot fail its neighbours;
- a poison record (or a body that is no JSON) is dead-lettered by the consumer itself, with a
  ``reason`` message attribute (also counted, with the last reason, for the board); its message is
  then deleted. The redrive policy remains only the backstop (e.g. a replica that stays behind).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity

from dialler.cdc import apply, metrics
from dialler.cdc.messages import BatchResult, IngestInput
from dialler.cdc.records import ChangeRecord, InvalidRecord, parse_record
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores

log = logging.getLogger("dialler.cdc")
MAX_MESSAGES = 10  # SQS's maximum per receive (and per batch delete)
MAX_RECEIVES = 10  # receives per batch while the queue has more: up to 100 messages
RECEIVE_WAVE = 3  # receives at once after the first
MAX_BATCH_RECORDS = 20_000  # no further receive once a batch holds this many records
HOLD_S = 30  # visibility while a batch waits for a dependency: longer than one retry's sleep
RETRY_MAX_S = 5.0
MARGIN_S = 10.0  # stop retrying this long before the activity's timeout, to let go of the messages cleanly


@dataclass(frozen=True, slots=True)
class _Item:
    record: ChangeRecord
    source: object  # the record as received (decoded JSON); a dead letter carries it as a one-record array
    message_id: str

    @property
    def raw(self) -> str:
        return json.dumps([self.source], separators=(",", ":"))


@dataclass(frozen=True)
class _Poison:
    body: str  # what goes to the DLQ: the record alone (as a one-record array), or the unreadable body
    reason: str
    message_id: str


class CdcActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.engine = queue_engine(stores)
        self._queue_urls: dict[str, str] = {}

    @activity.defn
    async def ingest_batch(self, input: IngestInput) -> BatchResult:
        sqs = self.stores.sqs()
        url = await self._queue_url(input.queue_name)
        await apply.dependencies_ready(self.stores.replica, self.stores.postgres, self.stores.redis)
        messages: list[dict[str, Any]] = []
        items: list[_Item] = []
        poison: list[_Poison] = []
        # A backlog is taken in one go (receives of ten until the queue runs dry or the batch is
        # full): one apply, one recompute per customer and one workflow task for all of it, where a
        # batch per receive paid those per ten messages and let the backlog grow under load. After
        # the long poll, receives go RECEIVE_WAVE at a time: each is a round trip to SQS.
        seen: set[str] = set()
        wave, receives = [self._receive(sqs, url, input.wait_s)], 0
        while wave:
            replies = await asyncio.gather(*wave)
            receives += len(wave)
            for got in replies:
                for message in got:
                    # At-least-once: a message can come twice, even within one batch (its handles
                    # differ; both are deleted). Its records are applied once.
                    if message["MessageId"] not in seen:
                        seen.add(message["MessageId"])
                        parsed, bad = _split(message)
                        items += parsed
                        poison += bad
                messages += got
            dry = any(len(got) < MAX_MESSAGES for got in replies)
            if dry or len(items) >= MAX_BATCH_RECORDS or receives >= MAX_RECEIVES:
                break
            wave = [self._receive(sqs, url, 0) for _ in range(min(RECEIVE_WAVE, MAX_RECEIVES - receives))]
        if not messages:
            return BatchResult()

        fresh, users, failed = await self._apply_holding(sqs, url, messages, items)
        poison += failed
        if poison:
            await self._dead_letter(sqs, poison)
        now = datetime.now(UTC)
        await metrics.observe(
            self.stores.redis,
            self.stores.settings.redis_prefix,
            latencies=[max(0.0, (now - r.committed_at).total_seconds()) for r in fresh],
            invalid=len(poison),
            last_reason=poison[-1].reason if poison else None,
        )
        await asyncio.gather(
            *(
                asyncio.to_thread(sqs.delete_message_batch, QueueUrl=url, Entries=entries)
                for entries in _entries(messages)
            )
        )
        return BatchResult(
            messages=len(messages),
            records=len(items),
            customers=users,
            refused=len(poison),
            stale=len(items) - len(fresh) - len(failed),
        )

    async def _receive(self, sqs: Any, url: str, wait_s: int) -> list[dict[str, Any]]:
        received = await asyncio.to_thread(
            sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=wait_s,
            AttributeNames=["ApproximateReceiveCount"],
        )
        return list(received.get("Messages", []))

    async def _apply_holding(
        self, sqs: Any, url: str, messages: list[dict[str, Any]], items: list[_Item]
    ) -> tuple[list[ChangeRecord], int, list[_Poison]]:
        """Apply the records, retrying transient failures while holding the messages (visibility
        extended). Gives up (raises) shortly before the activity's timeout: the messages come back
        after their visibility and the next attempt first waits for the dependencies."""
        info = activity.info()
        timeout = info.start_to_close_timeout or timedelta(seconds=60)
        deadline = time.monotonic() + timeout.total_seconds() - MARGIN_S
        delay = 0.2
        while True:
            try:
                return await self._apply_each(items)
            except Exception as exc:
                if not apply.is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("change batch waits for a dependency, retrying in %.1f s: %s", delay, _reason(exc))
            await self._hold(sqs, url, messages)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _apply_each(self, items: list[_Item]) -> tuple[list[ChangeRecord], int, list[_Poison]]:
        """The whole batch at once (the usual case); if that fails for a reason that is not
        transient, record by record, so that only the record at fault is dead-lettered."""
        try:
            fresh, users = await self._apply([item.record for item in items])
            return fresh, len(users), []
        except Exception as exc:
            if apply.is_transient(exc):
                raise
            log.warning("change batch failed (%s): applying its %d records one by one", _reason(exc), len(items))
        applied: list[ChangeRecord] = []
        touched: set[int] = set()
        failed: list[_Poison] = []
        errors: set[str] = set()
        for item in items:
            try:
                fresh, users = await self._apply([item.record])
            except Exception as exc:
                if apply.is_transient(exc):
                    raise  # retried whole: re-applying the records before it is harmless (idempotent)
                error = f"{type(exc).__name__}: {_reason(exc)}"
                errors.add("invalid" if isinstance(exc, InvalidRecord) else error)
                failed.append(
                    _Poison(
                        item.raw, f"{item.record.table} {item.record.id} could not be applied: {error}", item.message_id
                    )
                )
                continue
            applied += fresh
            touched |= users
        if len(failed) == len(items) > 1 and len(errors) == 1 and "invalid" not in errors:
            # Not one of them applied, all for the same reason: a store failing, not a batch of poison.
            raise apply.BatchFailedAlike(f"all {len(items)} records failed alike: {errors.pop()}")
        return applied, len(touched), failed

    async def _apply(self, records: Sequence[ChangeRecord]) -> tuple[list[ChangeRecord], set[int]]:
        applied = await apply.apply_records(self.stores, self.engine, records)
        return applied.fresh, applied.user_ids

    async def _hold(self, sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
        try:
            await asyncio.gather(
                *(
                    asyncio.to_thread(sqs.change_message_visibility_batch, QueueUrl=url, Entries=entries)
                    for entries in _entries(messages, VisibilityTimeout=HOLD_S)
                )
            )
        except Exception as exc:  # SQS itself blinking: the retry goes on; at worst one more receive
            log.warning("could not extend the visibility of a waiting change batch: %s", _reason(exc))
        activity.heartbeat()

    async def _dead_letter(self, sqs: Any, poison: list[_Poison]) -> None:
        """Send each poison record to the DLQ with its reason. Before the source message is deleted:
        a crash in between re-sends it (a duplicate dead letter, never a lost one)."""
        dlq = await self._queue_url(self.stores.settings.cdc_dlq_name)
        for start in range(0, len(poison), MAX_MESSAGES):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": p.body,
                    "MessageAttributes": {
                        "reason": {"DataType": "String", "StringValue": p.reason[:1000]},
                        "source-message-id": {"DataType": "String", "StringValue": p.message_id},
                    },
                }
                for i, p in enumerate(poison[start : start + MAX_MESSAGES])
            ]
            response = await asyncio.to_thread(sqs.send_message_batch, QueueUrl=dlq, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"the DLQ refused {len(response['Failed'])} dead letters")
        for p in poison:
            log.warning("change record of message %s dead-lettered: %s", p.message_id, p.reason)

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


def _entries(messages: list[dict[str, Any]], **extra: Any) -> list[list[dict[str, Any]]]:
    """Batch-call entries for the messages' receipt handles, ten per call (SQS's limit)."""
    return [
        [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], **extra} for i, m in enumerate(chunk)]
        for chunk in (messages[start : start + MAX_MESSAGES] for start in range(0, len(messages), MAX_MESSAGES))
    ]


def _split(message: dict[str, Any]) -> tuple[list[_Item], list[_Poison]]:
    """A message's usable change records, and its poison: each bad record alone, or the whole body
    when it is not a JSON object or array (nothing in it can be told apart)."""
    message_id = str(message["MessageId"])
    body = message["Body"]
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        return [], [_Poison(body, f"body is not JSON: {exc}", message_id)]
    if isinstance(payload, dict):
        raws, indexed = [payload], False
    elif isinstance(payload, list):
        raws, indexed = payload, True
    else:
        return [], [_Poison(body, "body must be a JSON object or array", message_id)]
    items: list[_Item] = []
    poison: list[_Poison] = []
    for i, raw in enumerate(raws):
        try:
            parsed = parse_record(raw, index=i if indexed else None)
            if isinstance(parsed, ChangeRecord):
                apply.check([parsed])
                items.append(_Item(parsed, raw, message_id))
        except InvalidRecord as exc:
            poison.append(_Poison(json.dumps([raw], separators=(",", ":")), exc.reason, message_id))
    return items, poison


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
