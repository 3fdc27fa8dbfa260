"""The reader thread: the blocking binlog stream, turned into chunks of encoded DMS records handed to
the event loop, within a byte budget of unsent records."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql
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

from dialler.cdc.publisher.common import SQS_MAX_MESSAGE_BYTES, BinlogPosition, PositionUnavailable, PublisherError
from dialler.cdc.publisher.options import PublisherOptions
from dialler.cdc.publisher.replica import (
    _mysql_reason,
    binlog_connection_settings,
)
from dialler.cdc.records import KNOWN_TABLES, Operation, format_timestamp, published_record
from dialler.config import mask_url

log = logging.getLogger("dialler.cdc.publisher")


# Server errors after which retrying cannot help: the position is gone, or we may not read the binlog.
_POSITION_UNAVAILABLE = 1236
_FATAL_MYSQL_ERRORS = {
    _POSITION_UNAVAILABLE: "binlog position unavailable",
    1045: "access denied",
    1227: "missing privilege",
}
_POSITION_ONLY_EVERY_S = 1.0  # how often the checkpoint may advance over changes we do not publish


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


def open_binlog(
    replica_url: str, *, server_id: int, schema: str, start: BinlogPosition, heartbeat_s: float | None = None
) -> BinLogStreamReader:
    """The replica's binlog from ``start``, as the publisher reads it: row events of the known tables,
    and the events that mark transactions and files. Blocking with a heartbeat (the publisher), or to
    the current end without one (``heartbeat_s`` None: bench/cdc_latency.py's decode case)."""
    return BinLogStreamReader(
        connection_settings=binlog_connection_settings(replica_url),
        server_id=server_id,
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
        only_schemas=[schema],
        only_tables=sorted(KNOWN_TABLES),
        resume_stream=True,
        log_file=start.log_file,
        log_pos=start.log_pos,
        # False even on MariaDB: with True the library ignores log_file/log_pos and replays.
        is_mariadb=False,
        blocking=heartbeat_s is not None,
        slave_heartbeat=heartbeat_s,
        ignore_decode_errors=True,  # one odd byte in a customer's name must not stop the capture
        # Parse a table map once per table id: 2.2x the rows/s. Safe because the server gives a
        # table a new id when ALTER TABLE changes it (checked on MariaDB 10.11: add/drop column).
        freeze_schema=True,
        enable_logging=False,
    )


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
                    error = PositionUnavailable if code == _POSITION_UNAVAILABLE else PublisherError
                    raise error(
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
        return open_binlog(
            self._replica_url,
            server_id=self._options.replication_server_id(),
            schema=self._schema,
            start=start,
            heartbeat_s=self._options.heartbeat_s,
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
        timestamp = format_timestamp(datetime.fromtimestamp(_commit_time(event.timestamp), UTC))
        for row in event.rows:
            if isinstance(event, UpdateRowsEvent):
                operation, data, before = Operation.UPDATE, row["after_values"], row["before_values"]
            elif isinstance(event, WriteRowsEvent):
                operation, data, before = Operation.INSERT, row["values"], None
            else:
                operation, data, before = Operation.DELETE, row["values"], None
            # No personal data in SQS or the DLQ: keys, versions and changed column names only.
            record = published_record(
                schema=event.schema,
                table=event.table,
                operation=operation,
                data=data,
                before=before,
                timestamp=timestamp,
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
