"""The publisher: the reader's chunks packed into bodies, sent in order, checkpointed once accepted."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.publisher.batcher import _Batch
from dialler.cdc.publisher.checkpoint import Checkpoint, clear_rebuild_request, load_checkpoint_record, save_checkpoint
from dialler.cdc.publisher.common import (
    SQS_MAX_MESSAGE_BYTES,
    BinlogPosition,
    PositionUnavailable,
    PublisherError,
    _reason,
)
from dialler.cdc.publisher.options import PublisherOptions
from dialler.cdc.publisher.reader import _END, _BinlogReader, _Budget, _Chunk, _ReaderFailed
from dialler.cdc.publisher.replica import (
    ReplicaStatus,
    inspect_replica,
    replica_schema,
)
from dialler.cdc.publisher.sqs import publisher_sqs_client
from dialler.cdc.publisher.status import PublisherMetrics, PublisherStatus, status_key
from dialler.cdc.records import KNOWN_TABLES
from dialler.config import Settings, mask_url

log = logging.getLogger("dialler.cdc.publisher")


class Publisher:
    """Binlog → SQS with a PostgreSQL checkpoint. ``await run(stop)`` until ``stop`` is set.

    ``sqs`` defaults to :func:`publisher_sqs_client`; ``redis`` (optional) receives the status hash
    :func:`status_key`; ``registry`` holds the Prometheus metrics (a fresh one by default: the entry
    point serves it with ``start_http_server``); ``request_rebuild(reason)`` starts a full queue
    rebuild (the entry point passes one that starts QueueRebuildWorkflow; the publisher knows no
    workflow). It is called when the checkpoint had to be dropped (another server, or a position the
    server no longer has), retried until it succeeds; the request is kept with the checkpoint until
    then, so a restart asks again. Without one the request stays recorded for a publisher that has one.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        postgres: AsyncEngine,
        redis: Redis | None = None,
        sqs: Any | None = None,
        options: PublisherOptions | None = None,
        registry: CollectorRegistry | None = None,
        request_rebuild: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._request_rebuild = request_rebuild
        self._rebuild_owed: str | None = None  # the reason of a rebuild still to request
        self._source_server: str | None = None
        self.options = options or PublisherOptions.from_settings(settings)
        self.schema = replica_schema(settings)
        self.registry = registry or CollectorRegistry()
        self.metrics = PublisherMetrics(self.registry, self.lag_s)
        self.started = asyncio.Event()  # set once the start position is fixed: later commits are captured
        self._postgres = postgres
        self._redis = redis
        self._sqs = sqs
        self._queue_url: str | None = None
        self._budget = _Budget(self.options.max_unsent_bytes)
        self._reader: _BinlogReader | None = None
        self._inbox: collections.deque[object] = collections.deque()
        self._wakeup = asyncio.Event()
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._failure: PublisherError | None = None
        self._give_up_at: float | None = None  # monotonic deadline for retries once stopping
        self._abandoned = False
        self._accepted: BinlogPosition | None = None  # after the last batch SQS accepted
        self._checkpoint_wanted = asyncio.Event()
        self._closing = False  # the background loops' stop: asked, not only cancelled (see run)
        self._sender_busy = False
        self._collector_idle = False
        self._state = "starting"
        self._published = 0
        self._messages = 0
        self._send_errors = 0
        self._checkpoint: BinlogPosition | None = None
        self._checkpoint_at: datetime | None = None
        self._redis_warned_at = 0.0

    # -- public API --

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, then send what was read, checkpoint, and return. Raises
        :class:`PublisherError` (one line) when the replica, SQS or PostgreSQL is unusable at start,
        or the binlog cannot be read any more. A Publisher runs once."""
        if self._reader is not None or self.started.is_set():
            raise RuntimeError("a Publisher runs once; make a new one")
        loop = asyncio.get_running_loop()
        start = await self._prepare()
        self._reader = _BinlogReader(
            replica_url=self.settings.replica_url,
            schema=self.schema,
            start=start,
            options=self.options,
            budget=self._budget,
            deliver=lambda item: self._deliver(loop, item),
            on_reconnect=self.metrics.binlog_reconnects.inc,
        )
        self._reader.start()
        self._state = "running"
        self.started.set()
        log.info(
            "publishing %s.{%s} from %s to SQS queue %s",
            self.schema,
            ",".join(sorted(KNOWN_TABLES)),
            start,
            self.settings.cdc_queue_name,
        )
        collector = asyncio.create_task(self._collect(), name="cdc-collect")
        sender = asyncio.create_task(self._send_all(), name="cdc-send")
        checkpointer = asyncio.create_task(self._checkpoint_accepted(), name="cdc-checkpoint")
        reporter = asyncio.create_task(self._report_status(), name="cdc-status")
        rebuilder = asyncio.create_task(self._request_owed_rebuild(), name="cdc-rebuild-request")
        stopper = asyncio.create_task(stop.wait(), name="cdc-stop")
        tasks = (collector, sender, checkpointer, reporter, rebuilder, stopper)
        try:
            await asyncio.wait({collector, sender, checkpointer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            self._request_stop()
            # The reader hands over what it has, the collector flushes, the sender drains.
            await asyncio.wait({collector, sender}, return_when=asyncio.FIRST_EXCEPTION)
            for worker in (collector, sender, checkpointer):
                if worker.done():
                    worker.result()  # a bug in our own loop: surface it rather than hang
            # Asked to stop rather than cancelled: a cancel that lands inside a database call can come
            # back as a driver error, be retried as one, and leave the task waiting for ever.
            self._closing = True
            self._checkpoint_wanted.set()
            await asyncio.wait({checkpointer}, timeout=self.options.shutdown_grace_s)
            if not await self._retrying(
                "final checkpoint write", self._save_accepted, errors=self._count_checkpoint_error
            ):
                log.error("final checkpoint not written: the next run re-sends from %s", self._checkpoint)
        finally:
            self._request_stop()
            self._closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self._reader.join, 5)
            if self._reader.is_alive():
                log.warning("binlog reader did not stop within 5 s; leaving it (daemon thread)")
            self._state = "failed" if self._failure else "stopped"
            await self._write_status()
        if self._failure is not None:
            if isinstance(self._failure, PositionUnavailable):
                await self._reset_after_refused_position()
            raise self._failure
        log.info(
            "stopped at checkpoint %s after %d records in %d messages",
            self._checkpoint,
            self._published,
            self._messages,
        )

    def lag_s(self) -> float:
        """Now minus the commit time of the last binlog event read; 0 when the reader has caught up
        with the binlog and SQS has accepted everything it read."""
        reader = self._reader
        if reader is None or reader.last_event_at is None:
            return 0.0
        if reader.caught_up and self._budget.used == 0 and not self._inbox:
            return 0.0
        return max(0.0, time.time() - reader.last_event_at)

    def status(self) -> PublisherStatus:
        last = self._reader.last_event_at if self._reader else None
        return PublisherStatus(
            state=self._state,
            last_event_at=datetime.fromtimestamp(last, UTC) if last else None,
            lag_s=self.lag_s(),
            published_total=self._published,
            messages_total=self._messages,
            send_errors_total=self._send_errors,
            checkpoint=self._checkpoint,
            checkpoint_at=self._checkpoint_at,
        )

    # -- start-up --

    async def _prepare(self) -> BinlogPosition:
        replica = await asyncio.to_thread(inspect_replica, self.settings.replica_url)
        await self._resolve_queue()
        name = self.options.checkpoint_name
        self._source_server = replica.server or None
        try:
            record = await load_checkpoint_record(self._postgres, name)
            if record is None:
                # Start at the binlog's end (the batch rebuild covers history), and record it now:
                # a crash before the first send must not move the start past changes made meanwhile.
                checkpoint = replica.end
                await save_checkpoint(self._postgres, name, checkpoint, source_server=self._source_server)
                log.info("no checkpoint %r: starting at the binlog's end %s", name, checkpoint)
            else:
                checkpoint = record.position
                self._rebuild_owed = record.rebuild_requested
                lost = self._position_lost(record, replica)
                if lost is not None:
                    checkpoint = await self._reset_to_end(record, replica, *lost)
        except PublisherError:
            raise
        except Exception as exc:
            raise PublisherError(
                f"PostgreSQL at {mask_url(self.settings.postgres_url)} is unreachable: {_reason(exc)}"
            ) from None
        self._set_checkpoint(checkpoint)
        return checkpoint

    def _position_lost(self, record: Checkpoint, replica: ReplicaStatus) -> tuple[str, str] | None:
        """Why the checkpoint cannot be resumed on this server (a metric label, a phrase), or None."""
        if record.source_server is not None and replica.server and record.source_server != replica.server:
            return "other_server", "was written against another MySQL server (replica replaced or failed over)"
        if not replica.holds(record.position):
            return "position_gone", "is not on the MySQL server any more (binlogs purged or truncated)"
        return None

    async def _reset_to_end(self, record: Checkpoint, replica: ReplicaStatus, kind: str, why: str) -> BinlogPosition:
        """Changes between the old position and now cannot be read from this server: start at its
        end and owe a full queue rebuild, which recomputes every queue from the replica's rows (the
        drift report shows what had changed). Position, source and request are one write."""
        reason = f"cdc source reset ({kind}) at {replica.end}"
        await save_checkpoint(
            self._postgres,
            self.options.checkpoint_name,
            replica.end,
            source_server=self._source_server,
            rebuild_requested=reason,
        )
        self._rebuild_owed = reason
        self.metrics.source_resets.labels(reason=kind).inc()
        log.warning(
            "checkpoint %r at %s %s: starting at the binlog's current end %s and requesting a full queue rebuild",
            self.options.checkpoint_name,
            record.position,
            why,
            replica.end,
        )
        return replica.end

    async def _reset_after_refused_position(self) -> None:
        """The server would not stream from the checkpoint (e.g. a checkpoint written before the
        source was recorded, at a position that is not an event boundary on this server): reset it as
        at start-up, so that the restart (make run's supervisor, compose's restart:) carries on
        instead of failing the same way again."""
        try:
            replica = await asyncio.to_thread(inspect_replica, self.settings.replica_url)
            record = await load_checkpoint_record(self._postgres, self.options.checkpoint_name)
            if record is not None:
                why = "was refused by the MySQL server (not a position it can stream from)"
                await self._reset_to_end(record, replica, "position_refused", why)
        except Exception as exc:
            log.error("could not reset the refused checkpoint: %s", _reason(exc))

    async def _request_owed_rebuild(self) -> None:
        """Start the owed rebuild (retrying while Temporal is down), then clear the request."""
        reason = self._rebuild_owed
        if reason is None:
            return
        if self._request_rebuild is None:
            log.warning(
                "a queue rebuild is owed (%s) but this publisher cannot start one; run `dialler rebuild`", reason
            )
            return
        delay = 0.5
        while not self._closing:
            try:
                await self._request_rebuild(reason)
                await clear_rebuild_request(self._postgres, self.options.checkpoint_name, reason)
            except Exception as exc:
                log.warning("could not request the queue rebuild yet, retrying in %.1f s: %s", delay, _reason(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._rebuild_owed = None
            self.metrics.rebuilds_requested.inc()
            log.info("queue rebuild requested (%s)", reason)
            return

    async def _resolve_queue(self) -> None:
        if self._sqs is None:
            self._sqs = publisher_sqs_client(self.settings)
        try:
            response = await asyncio.to_thread(self._sqs.get_queue_url, QueueName=self.settings.cdc_queue_name)
        except Exception as exc:
            where, queue = self.settings.sqs_endpoint_url or "AWS", self.settings.cdc_queue_name
            raise PublisherError(f"SQS at {where} is unreachable or lacks queue {queue!r}: {_reason(exc)}") from None
        self._queue_url = response["QueueUrl"]

    # -- loop side --

    def _deliver(self, loop: asyncio.AbstractEventLoop, item: object) -> None:
        """Called on the reader thread. deque.append is thread-safe; the loop is woken only when the
        collector sleeps, not per transaction (a wake-up per transaction cost a third of the rows/s)."""
        self._inbox.append(item)
        if self._collector_idle:
            self._collector_idle = False
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is going away
                loop.call_soon_threadsafe(self._wakeup.set)

    def _request_stop(self) -> None:
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + self.options.shutdown_grace_s
        if self._reader is not None:
            self._reader.stop_requested.set()

    async def _collect(self) -> None:
        """Chunks → message batches, in order."""
        loop = asyncio.get_running_loop()
        batch = _Batch()
        while True:
            self._wakeup.clear()
            while self._inbox:
                item = self._inbox.popleft()
                if item is _END:
                    self._flush(batch)
                    self._outbox.put_nowait(_END)
                    return
                if isinstance(item, _ReaderFailed):
                    self._failure = item.error
                    continue
                assert isinstance(item, _Chunk)
                batch = self._add(batch, item, loop.time())
            due = batch.opened_at + self.options.linger_s
            # While a send is in flight the batch keeps growing (up to the size limits): under load
            # messages get fuller instead of more numerous; the sender wakes us when it is free.
            if not batch.empty and loop.time() >= due and not self._sender_busy:
                batch = self._flush(batch)
            # Idle first, then look again: a chunk delivered in between either is seen here or
            # finds the flag set and wakes us (see _deliver).
            self._collector_idle = True
            if self._inbox:
                self._collector_idle = False
                continue
            if batch.empty or loop.time() >= due:
                await self._wakeup.wait()
            else:
                # Waiting on the event (not on a queue) with a timeout loses nothing: items stay in the deque.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), due - loop.time())
            self._collector_idle = False

    def _add(self, batch: _Batch, chunk: _Chunk, now: float) -> _Batch:
        limit = min(self.options.max_message_bytes, SQS_MAX_MESSAGE_BYTES)
        for record in chunk.records:
            if batch.records and (
                batch.body_bytes_with(record) > limit or len(batch.records) >= self.options.max_message_records
            ):
                batch = self._flush(batch)
            if batch.empty:
                batch.opened_at = now
            batch.records.append(record)
            batch.nbytes += len(record)
        if chunk.end is not None:
            if batch.empty:
                batch.opened_at = now
            batch.end = chunk.end
        return batch

    def _flush(self, batch: _Batch) -> _Batch:
        if not batch.empty:
            self._outbox.put_nowait(batch)
        return _Batch()

    async def _send_all(self) -> None:
        """Batches → SQS, then checkpoint; strictly in order, one at a time."""
        while True:
            if self._outbox.empty():
                self._sender_busy = False
                self._wakeup.set()  # a lingering batch may go now
            batch = await self._outbox.get()
            self._sender_busy = True
            if batch is _END:
                return
            assert isinstance(batch, _Batch)
            try:
                if self._abandoned:
                    continue
                if batch.records and not await self._send(batch):
                    self._abandoned = True  # nothing after an unsent batch may be checkpointed
                    continue
                if batch.end is not None:
                    self._accepted = batch.end
                    self._checkpoint_wanted.set()
            finally:
                self._budget.release(batch.nbytes)

    async def _checkpoint_accepted(self) -> None:
        """Writes the latest accepted position, apart from sending: PostgreSQL being slow or down
        delays the checkpoint (more replay after a crash), never the changes. Writes coalesce."""
        delay = 0.1
        while True:
            await self._checkpoint_wanted.wait()
            self._checkpoint_wanted.clear()
            if self._closing:
                return  # the final write is run's
            try:
                await self._save_accepted()
                delay = 0.1
            except Exception as exc:
                self._count_checkpoint_error()
                log.warning("checkpoint write failed, retrying in %.1f s: %s", delay, _reason(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max_s)
                self._checkpoint_wanted.set()

    async def _send(self, batch: _Batch) -> bool:
        body = batch.body()
        started = time.perf_counter()
        if not await self._retrying("SQS send", self._send_body, body, errors=self._count_send_error):
            log.error(
                "gave up sending %d records at shutdown; they will be re-read from %s",
                len(batch.records),
                self._checkpoint,
            )
            return False
        self.metrics.send_seconds.observe(time.perf_counter() - started)
        self.metrics.records.inc(len(batch.records))
        self.metrics.messages.inc()
        self.metrics.message_bytes.inc(len(body))
        self.metrics.batch_records.observe(len(batch.records))
        self._published += len(batch.records)
        self._messages += 1
        return True

    async def _send_body(self, body: str) -> None:
        await asyncio.to_thread(self._sqs.send_message, QueueUrl=self._queue_url, MessageBody=body)  # type: ignore[union-attr]

    async def _save_accepted(self) -> None:
        position = self._accepted
        if position is None or position == self._checkpoint:
            return
        await asyncio.wait_for(
            save_checkpoint(self._postgres, self.options.checkpoint_name, position, source_server=self._source_server),
            10,
        )
        self._set_checkpoint(position)

    def _count_checkpoint_error(self) -> None:
        self.metrics.checkpoint_errors.inc()

    def _set_checkpoint(self, position: BinlogPosition) -> None:
        self._checkpoint = position
        self._checkpoint_at = datetime.now(UTC)
        self.metrics.checkpoint_pos.set(position.log_pos)
        self.metrics.checkpoint_time.set(self._checkpoint_at.timestamp())
        self.metrics.checkpoint.info({"log_file": position.log_file, "log_pos": str(position.log_pos)})

    def _count_send_error(self) -> None:
        self._send_errors += 1
        self.metrics.send_errors.inc()

    async def _retrying(self, what: str, call: Callable[..., Any], *args: Any, errors: Callable[[], None]) -> bool:
        """Retry with capped exponential back-off until it succeeds (True), or until the shutdown
        grace period is over (False). A running publisher never skips: it waits for SQS/PostgreSQL."""
        delay = 0.1
        attempt = 0
        while True:
            try:
                await call(*args)
                if attempt:
                    log.info("%s succeeded after %d failed attempts", what, attempt)
                return True
            except Exception as exc:
                attempt += 1
                errors()
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("%s failed (attempt %d), retrying: %s", what, attempt, _reason(exc))
            if self._give_up_at is not None and time.monotonic() + delay > self._give_up_at:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.retry_max_s)

    async def _report_status(self) -> None:
        while not self._closing:  # (a swallowed cancel must not keep it going: see run)
            if self._reader is not None and self._reader.last_event_at is not None:
                self.metrics.last_event.set(self._reader.last_event_at)
            await self._write_status()
            await asyncio.sleep(self.options.status_interval_s)

    async def _write_status(self) -> None:
        if self._redis is None:
            return
        try:
            mapping: Mapping[Any, Any] = self.status().as_redis_hash()
            await self._redis.hset(status_key(self.settings), mapping=mapping)
        except Exception as exc:  # the status is informative; Redis being down must not stop publishing
            if time.monotonic() - self._redis_warned_at > 60:
                self._redis_warned_at = time.monotonic()
                log.warning("could not write the publisher status to Redis: %s", _reason(exc))
