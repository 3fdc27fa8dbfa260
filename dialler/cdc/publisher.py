"""The binlog publisher: the local stand-in for AWS DMS. It reads the replica's row binlog and sends
every row change of the contract tables to SQS as DMS-shaped records, many per message.

Threads and delivery:

- One **reader thread** owns the blocking ``BinLogStreamReader`` (blocking mode, with a server
  heartbeat every ``heartbeat_s`` so that it wakes up to notice a stop request and to know it has
  caught up). It turns row events into encoded DMS records and hands them to the event loop in
  chunks: one chunk per transaction (marked with the binlog position after its XID), or part of a
  large transaction (unmarked). A byte budget of unsent records blocks the reader when SQS is slow
  or down, so memory stays bounded and the binlog, not this process, holds the backlog.
- On the **event loop**, a collector packs chunks into message bodies (a JSON array; flushed on
  size, on record count, or ``linger_s`` after the batch's first record once the sender is free,
  so that under load messages get fuller rather than more numerous) and one sender sends them in
  order through ``asyncio.to_thread`` (boto3 blocks). Only after SQS accepted a body does the
  position after the last complete transaction in it become the checkpoint, which a separate task
  upserts into PostgreSQL (coalescing, retrying; a slow or down PostgreSQL delays the checkpoint,
  not the changes). A restart resumes there, so every change is sent at least once and none is
  skipped; a transaction split across bodies is re-sent whole after a crash, never half lost.

Timestamps: the binlog stores event times in whole seconds S (the statement's start). So that
commit-to-queue latency can be measured below a second, ``metadata.timestamp`` is the publisher's
read time clamped into that second, ``max(S, min(read time, S + 0.999999))``: never earlier than the
true commit, and later by at most min(read delay, 1 s). Caught up (the usual case: the row event
arrives < 1 ms after the commit) it is accurate to the read delay; a reader that is behind shows its
lag at most 1 s short. (The bare second would add 0–1 s of noise to every latency figure.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pymysql
from botocore.config import Config
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.models import BinlogCheckpoint
from dialler.cdc.records import KNOWN_TABLES, Operation, to_dms_record
from dialler.config import Settings, mask_url

log = logging.getLogger("dialler.cdc.publisher")

SQS_MAX_MESSAGE_BYTES = 262_144
# Server errors after which retrying cannot help: the position is gone, or we may not read the binlog.
_FATAL_MYSQL_ERRORS = {1236: "binlog position unavailable", 1045: "access denied", 1227: "missing privilege"}
_POSITION_ONLY_EVERY_S = 1.0  # how often the checkpoint may advance over changes we do not publish


class PublisherError(RuntimeError):
    """The publisher cannot run; the message is one line for the operator (passwords masked)."""


@dataclass(frozen=True, order=True, slots=True)
class BinlogPosition:
    log_file: str
    log_pos: int

    def __str__(self) -> str:
        return f"{self.log_file}:{self.log_pos}"


@dataclass(frozen=True)
class PublisherOptions:
    """Publisher tuning, read from ``DIALLER_PUBLISHER_<FIELD>`` by :meth:`from_env`."""

    checkpoint_name: str = "cdc-publisher"
    server_id: int | None = None  # replication client id; None derives a stable one from checkpoint_name
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9465  # Prometheus endpoint of the process; None or 0 for none
    max_message_bytes: int = 200_000  # SQS allows 262,144: leave room for attributes and growth
    max_message_records: int = 1_000
    linger_s: float = 0.05  # a batch waits this long after its first record for more
    heartbeat_s: float = 0.1  # server heartbeat while idle: bounds stop latency, marks "caught up"
    max_unsent_bytes: int = 16 * 1024 * 1024  # read-ahead budget before the reader waits for SQS
    status_interval_s: float = 1.0  # Redis status hash refresh
    retry_max_s: float = 5.0  # cap of the exponential back-off for SQS, PostgreSQL and the binlog
    shutdown_grace_s: float = 10.0  # on stop, how long to keep retrying the last send

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PublisherOptions:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"DIALLER_PUBLISHER_{f.name.upper()}")
            if raw is None:
                continue
            kind = str(f.type)
            if raw.strip().lower() in ("", "none") and "None" in kind:
                values[f.name] = None
            elif kind.startswith("int"):
                values[f.name] = int(raw)
            elif kind.startswith("float"):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    def replication_server_id(self) -> int:
        # Stable per checkpoint name: a restarted publisher replaces its predecessor's dump thread on
        # the server (same id) instead of running beside it. Kept clear of small ids used by servers.
        if self.server_id is not None:
            return self.server_id
        return 100_000 + zlib.crc32(self.checkpoint_name.encode()) % 2_000_000_000


# --- replica connection and checks ----------------------------------------------------------------


def binlog_connection_settings(replica_url: str) -> dict[str, Any]:
    url = make_url(replica_url)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "charset": "utf8mb4",
        "connect_timeout": 5,
        # Heartbeats arrive every heartbeat_s while idle, so a silent socket this long is a dead one.
        "read_timeout": 30,
    }


def replica_schema(settings: Settings) -> str:
    """The database whose changes are published: the one the replica URL names."""
    database = make_url(settings.replica_url).database
    if not database:
        raise PublisherError(f"the replica URL {mask_url(settings.replica_url)} names no database to capture")
    return database


def binlog_problems(variables: Mapping[str, str]) -> list[str]:
    """What is wrong with the server's binlog settings for change capture (empty when fine)."""
    value = {k.lower(): str(v).upper() for k, v in variables.items()}
    if value.get("log_bin") != "ON":
        return ["the binary log is off (start the server with --log-bin --binlog-format=ROW)"]
    problems = []
    if value.get("binlog_format") != "ROW":
        problems.append(f"binlog_format is {value.get('binlog_format')}, not ROW")
    if value.get("binlog_row_image", "FULL") != "FULL":
        problems.append(f"binlog_row_image is {value.get('binlog_row_image')}, not FULL (updates need whole rows)")
    if value.get("binlog_row_metadata", "FULL") != "FULL":
        problems.append(f"binlog_row_metadata is {value.get('binlog_row_metadata')}, not FULL (column names are lost)")
    return problems


@dataclass(frozen=True)
class ReplicaStatus:
    end: BinlogPosition  # SHOW MASTER STATUS: where the binlog ends now
    log_files: dict[str, int]  # SHOW BINARY LOGS: the files still on the server, with their sizes

    def holds(self, position: BinlogPosition) -> bool:
        """Whether the position can be on this server (its file is there and long enough). A
        replaced server starts again at binlog.000001, so the file name alone is not enough."""
        size = self.log_files.get(position.log_file)
        return size is not None and 4 <= position.log_pos <= size


def inspect_replica(replica_url: str) -> ReplicaStatus:
    """Connect, check the binlog settings, and read the current binlog end. Blocking."""
    where = f"MySQL replica at {mask_url(replica_url)}"
    settings = {k: v for k, v in binlog_connection_settings(replica_url).items() if k != "read_timeout"}
    try:
        conn = pymysql.connect(**settings)
    except pymysql.MySQLError as exc:
        raise PublisherError(f"{where} is unreachable: {_mysql_reason(exc)}") from None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')"
            )
            problems = binlog_problems(dict(cur.fetchall()))
            if problems:
                raise PublisherError(f"{where} cannot feed change capture: {'; '.join(problems)}")
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            if row is None:
                raise PublisherError(f"{where} cannot feed change capture: the binary log is off")
            cur.execute("SHOW BINARY LOGS")
            files = {str(r[0]): int(r[1]) for r in cur.fetchall()}
    except pymysql.MySQLError as exc:
        raise PublisherError(f"{where} refused the binlog checks: {_mysql_reason(exc)}") from None
    finally:
        conn.close()
    return ReplicaStatus(end=BinlogPosition(str(row[0]), int(row[1])), log_files=files)


def _mysql_reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


# --- checkpoints (PostgreSQL) ---------------------------------------------------------------------


async def load_checkpoint(engine: AsyncEngine, name: str) -> BinlogPosition | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(BinlogCheckpoint.log_file, BinlogCheckpoint.log_pos).where(BinlogCheckpoint.name == name)
            )
        ).first()
    return None if row is None else BinlogPosition(row.log_file, row.log_pos)


async def save_checkpoint(engine: AsyncEngine, name: str, position: BinlogPosition) -> None:
    values = {"log_file": position.log_file, "log_pos": position.log_pos, "updated_at": datetime.now(UTC)}
    statement = pg_insert(BinlogCheckpoint).values(name=name, **values)
    statement = statement.on_conflict_do_update(index_elements=[BinlogCheckpoint.name], set_=values)
    async with engine.begin() as conn:
        await conn.execute(statement)


async def delete_checkpoint(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(BinlogCheckpoint).where(BinlogCheckpoint.name == name))


# --- SQS --------------------------------------------------------------------------------------------


def publisher_sqs_client(settings: Settings, endpoint_url: str | None = None) -> Any:
    """A boto3 SQS client with short timeouts: the publisher retries on its own, and a dead endpoint
    must show up in seconds, not after botocore's default minute."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url or settings.sqs_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    )


# --- metrics ---------------------------------------------------------------------------------------


class PublisherMetrics:
    """Prometheus metrics in their own registry (one publisher per registry; tests run several)."""

    def __init__(self, registry: CollectorRegistry, lag: Callable[[], float]) -> None:
        self.registry = registry
        self.records = Counter("dialler_cdc_publisher_records", "Row changes accepted by SQS", registry=registry)
        self.messages = Counter("dialler_cdc_publisher_messages", "SQS messages sent", registry=registry)
        self.message_bytes = Counter("dialler_cdc_publisher_message_bytes", "Bytes sent to SQS", registry=registry)
        self.send_errors = Counter("dialler_cdc_publisher_send_errors", "Failed SQS sends (retried)", registry=registry)
        self.checkpoint_errors = Counter(
            "dialler_cdc_publisher_checkpoint_errors", "Failed checkpoint writes (retried)", registry=registry
        )
        self.binlog_reconnects = Counter(
            "dialler_cdc_publisher_binlog_reconnects",
            "Binlog stream reconnections after an error",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "dialler_cdc_publisher_send_seconds",
            "SQS send latency",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.batch_records = Histogram(
            "dialler_cdc_publisher_batch_records",
            "Records per SQS message",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )
        self.lag = Gauge(
            "dialler_cdc_publisher_lag_seconds",
            "Now minus the commit time of the last binlog event read; 0 when caught up and all sent",
            registry=registry,
        )
        self.lag.set_function(lag)
        self.last_event = Gauge(
            "dialler_cdc_publisher_last_event_timestamp_seconds",
            "Commit time of the last event read",
            registry=registry,
        )
        self.checkpoint_pos = Gauge(
            "dialler_cdc_publisher_checkpoint_log_position", "Checkpointed binlog position", registry=registry
        )
        self.checkpoint_time = Gauge(
            "dialler_cdc_publisher_checkpoint_timestamp_seconds",
            "When the checkpoint was last written",
            registry=registry,
        )
        self.checkpoint = Info("dialler_cdc_publisher_checkpoint", "Checkpointed binlog coordinates", registry=registry)


@dataclass(frozen=True)
class PublisherStatus:
    state: str  # starting | running | stopped | failed
    last_event_at: datetime | None
    lag_s: float
    published_total: int
    messages_total: int
    send_errors_total: int
    checkpoint: BinlogPosition | None
    checkpoint_at: datetime | None

    def as_redis_hash(self) -> dict[str, str]:
        return {
            "state": self.state,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else "",
            "lag_s": f"{self.lag_s:.3f}",
            "published_total": str(self.published_total),
            "messages_total": str(self.messages_total),
            "send_errors_total": str(self.send_errors_total),
            "checkpoint": str(self.checkpoint) if self.checkpoint else "",
            "checkpoint_at": self.checkpoint_at.isoformat() if self.checkpoint_at else "",
            "updated_at": datetime.now(UTC).isoformat(),
        }


def status_key(settings: Settings) -> str:
    return f"{settings.redis_prefix}:cdc:publisher"


# --- reader thread → event loop -------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    records: list[str]  # encoded JSON records, ASCII (so len() is the byte size)
    nbytes: int
    end: BinlogPosition | None  # the position after the transaction this chunk completes, if any


@dataclass(slots=True)
class _ReaderFailed:
    error: PublisherError


_END = object()  # the reader has stopped; nothing follows


class _Budget:
    """Bytes read from the binlog but not yet accepted by SQS. The reader waits when it is spent."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        with self._cond:
            # One oversized chunk may pass alone, or a single huge transaction could never move.
            while self._used and self._used + nbytes > self._limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._cond:
            self._used -= nbytes
            self._cond.notify_all()


class _BinlogReader(threading.Thread):
    """Reads the binlog from ``start`` and delivers chunks to the loop until stopped."""

    CHUNK_RECORDS = 500  # a large transaction is handed over in parts of this many records

    def __init__(
        self,
        *,
        replica_url: str,
        schema: str,
        start: BinlogPosition,
        options: PublisherOptions,
        budget: _Budget,
        deliver: Callable[[object], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        super().__init__(name="binlog-reader", daemon=True)  # daemon: a hung socket must not block exit
        self._replica_url = replica_url
        self._schema = schema
        self._options = options
        self._budget = budget
        self._deliver = deliver
        self._on_reconnect = on_reconnect
        self.stop_requested = threading.Event()
        # Plain attributes read by the loop thread for lag (single assignments are atomic).
        self.last_event_at: float | None = None
        self.caught_up = False
        self._resume_at = start  # after the last transaction handed over
        self._file = start.log_file
        self._transaction_id: int | None = None
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._unsent_end: BinlogPosition | None = None  # a transaction end not handed over yet
        self._last_handover = 0.0
        self._dropped = False  # once a chunk is dropped, no later position may be handed over

    # -- thread body --

    def run(self) -> None:
        try:
            self._run()
        except PublisherError as exc:
            self._deliver(_ReaderFailed(exc))
        except Exception as exc:  # a bug or a poison event: stop the publisher rather than skip it
            log.exception("binlog reader failed")
            self._deliver(_ReaderFailed(PublisherError(f"binlog reader failed: {type(exc).__name__}: {exc}")))
        finally:
            self._deliver(_END)

    def _run(self) -> None:
        delay = 0.2
        while not self.stop_requested.is_set():
            stream = self._open(self._resume_at)
            try:
                self._consume(stream)
                delay = 0.2
            except (pymysql.MySQLError, OSError) as exc:
                code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args else None
                if code in _FATAL_MYSQL_ERRORS:
                    raise PublisherError(
                        f"binlog stream of MySQL replica at {mask_url(self._replica_url)} failed at "
                        f"{self._resume_at} ({_FATAL_MYSQL_ERRORS[code]}): {_mysql_reason(exc)}"
                    ) from None
                log.warning(
                    "binlog stream lost (%s); reconnecting from %s in %.1f s",
                    _mysql_reason(exc),
                    self._resume_at,
                    delay,
                )
                self.caught_up = False  # cannot tell while disconnected: let the lag grow
                self._on_reconnect()
            finally:
                stream.close()
            # Records of a transaction cut short are read again from its start.
            self._pending, self._pending_bytes = [], 0
            self._file = self._resume_at.log_file
            if self.stop_requested.wait(delay):
                break
            delay = min(delay * 2, self._options.retry_max_s)
        if self._unsent_end is not None:
            self._hand_over(end=self._unsent_end)

    def _open(self, start: BinlogPosition) -> BinLogStreamReader:
        return BinLogStreamReader(
            connection_settings=binlog_connection_settings(self._replica_url),
            server_id=self._options.replication_server_id(),
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                MariadbGtidEvent,
                GtidEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self._schema],
            only_tables=sorted(KNOWN_TABLES),
            resume_stream=True,
            log_file=start.log_file,
            log_pos=start.log_pos,
            # False even on MariaDB: with True the library ignores log_file/log_pos and replays.
            is_mariadb=False,
            blocking=True,
            slave_heartbeat=self._options.heartbeat_s,
            ignore_decode_errors=True,  # one odd byte in a customer's name must not stop the capture
            # Parse a table map once per table id: 2.2x the rows/s. Safe because the server gives a
            # table a new id when ALTER TABLE changes it (checked on MariaDB 10.11: add/drop column).
            freeze_schema=True,
            enable_logging=False,
        )

    def _consume(self, stream: BinLogStreamReader) -> None:
        while not self.stop_requested.is_set():
            event = stream.fetchone()
            if event is None:
                continue
            if isinstance(event, HeartbeatLogEvent):
                # Sent only when the server has had nothing for us for heartbeat_s: we are caught up.
                self.caught_up = True
                if self._unsent_end is not None:
                    self._hand_over(end=self._unsent_end)
                continue
            self.caught_up = False
            if event.timestamp:
                self.last_event_at = _commit_time(event.timestamp)
            if isinstance(event, RotateEvent):
                self._file = event.next_binlog
            elif isinstance(event, MariadbGtidEvent):
                self._transaction_id = event.gtid_seq_no
            elif isinstance(event, GtidEvent):
                self._transaction_id = event.gno
            elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                self._add_rows(event)
            elif isinstance(event, XidEvent) or (
                isinstance(event, QueryEvent) and _query_text(event).upper() == "COMMIT"
            ):
                self._end_transaction(BinlogPosition(self._file, event.packet.log_pos))

    def _add_rows(self, event: WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent) -> None:
        committed_at = datetime.fromtimestamp(_commit_time(event.timestamp), UTC)
        for row in event.rows:
            if isinstance(event, UpdateRowsEvent):
                operation, data, before = Operation.UPDATE, row["after_values"], row["before_values"]
            elif isinstance(event, WriteRowsEvent):
                operation, data, before = Operation.INSERT, row["values"], None
            else:
                operation, data, before = Operation.DELETE, row["values"], None
            record = to_dms_record(
                schema=event.schema,
                table=event.table,
                operation=operation,
                data=data,
                before=before,
                committed_at=committed_at,
                transaction_id=self._transaction_id,
                log_file=self._file,
                log_pos=event.packet.log_pos,
            )
            encoded = self._encode(record)
            if encoded is None:
                continue
            self._pending.append(encoded)
            self._pending_bytes += len(encoded)
            if len(self._pending) >= self.CHUNK_RECORDS or self._pending_bytes >= self._options.max_message_bytes:
                self._hand_over(end=None)

    def _encode(self, record: dict[str, Any]) -> str | None:
        encoded = json.dumps(record, separators=(",", ":"))  # ensure_ascii: len() == bytes
        limit = min(self._options.max_message_bytes, SQS_MAX_MESSAGE_BYTES) - 2
        if len(encoded) <= limit:
            return encoded
        # Columns the main app added can make a row too big for one message; the contract's fit.
        from dialler.replica.schema import contract_columns

        known = set(contract_columns().get(record["metadata"]["table-name"], ()))
        for part in ("data", "before-image"):
            if part in record:
                record[part] = {k: v for k, v in record[part].items() if k in known}
        encoded = json.dumps(record, separators=(",", ":"))
        meta = record["metadata"]
        where = f"{meta['table-name']} id {record['data'].get('id')} at {meta['log-file']}:{meta['log-position']}"
        if len(encoded) <= limit:
            log.warning("%s: record over %d bytes, sent with the contract's columns only", where, limit)
            return encoded
        log.error("%s: record over %d bytes even with the contract's columns only: not sent", where, limit)
        return None

    def _end_transaction(self, end: BinlogPosition) -> None:
        self._transaction_id = None
        if self._pending:
            self._hand_over(end=end)
            return
        # A transaction on other tables: let the checkpoint move past it, but not once per transaction.
        self._unsent_end = end
        if time.monotonic() - self._last_handover >= _POSITION_ONLY_EVERY_S:
            self._hand_over(end=end)

    def _hand_over(self, *, end: BinlogPosition | None) -> None:
        chunk = _Chunk(self._pending, self._pending_bytes, end)
        self._pending, self._pending_bytes = [], 0
        if end is not None:
            self._resume_at = end
            self._unsent_end = None
        self._last_handover = time.monotonic()
        if self._dropped:
            return
        if chunk.nbytes and not self._budget.acquire(chunk.nbytes, self.stop_requested):
            # Stopping while SQS is behind: this chunk is not sent, so nothing after it may be
            # checkpointed either. The next run reads it again from the last checkpoint.
            self._dropped = True
            return
        self._deliver(chunk)


def _commit_time(binlog_second: int) -> float:
    # See the module docstring: the read time, clamped into the event's binlog second.
    return max(float(binlog_second), min(time.time(), binlog_second + 0.999999))


def _query_text(event: QueryEvent) -> str:
    query = event.query
    return (query.decode(errors="replace") if isinstance(query, bytes) else str(query)).strip()


# --- the publisher ---------------------------------------------------------------------------------


@dataclass
class _Batch:
    records: list[str] = field(default_factory=list)
    nbytes: int = 0  # record bytes (the budget's unit), without the array's brackets and commas
    end: BinlogPosition | None = None
    opened_at: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.records and self.end is None

    def body(self) -> str:
        return "[" + ",".join(self.records) + "]"

    def body_bytes_with(self, record: str) -> int:
        return self.nbytes + len(record) + len(self.records) + 2


class Publisher:
    """Binlog → SQS with a PostgreSQL checkpoint. ``await run(stop)`` until ``stop`` is set.

    ``sqs`` defaults to :func:`publisher_sqs_client`; ``redis`` (optional) receives the status hash
    :func:`status_key`; ``registry`` holds the Prometheus metrics (a fresh one by default: the entry
    point serves it with ``start_http_server``).
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
    ) -> None:
        self.settings = settings
        self.options = options or PublisherOptions()
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
        stopper = asyncio.create_task(stop.wait(), name="cdc-stop")
        tasks = (collector, sender, checkpointer, reporter, stopper)
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
        try:
            checkpoint = await load_checkpoint(self._postgres, name)
            if checkpoint is None:
                # Start at the binlog's end (the batch rebuild covers history), and record it now:
                # a crash before the first send must not move the start past changes made meanwhile.
                checkpoint = replica.end
                await save_checkpoint(self._postgres, name, checkpoint)
                log.info("no checkpoint %r: starting at the binlog's end %s", name, checkpoint)
        except PublisherError:
            raise
        except Exception as exc:
            raise PublisherError(
                f"PostgreSQL at {mask_url(self.settings.postgres_url)} is unreachable: {_reason(exc)}"
            ) from None
        if not replica.holds(checkpoint):
            raise PublisherError(
                f"checkpoint {name!r} at {checkpoint} is not on the MySQL replica at "
                f"{mask_url(self.settings.replica_url)} any more (binlogs purged or server replaced): "
                "restart with --reset-checkpoint and run a queue rebuild"
            )
        self._set_checkpoint(checkpoint)
        return checkpoint

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
        await asyncio.wait_for(save_checkpoint(self._postgres, self.options.checkpoint_name, position), 10)
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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
