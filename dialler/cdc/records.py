"""The DMS change-record format (``docs/cdc-event-format.md``): parsing, validation, ordering, and the
one function that builds a record, used by the local binlog publisher.

Pure: no I/O, no clocks. An SQS message body holds one record (as DMS → Kinesis → Pipe delivers it)
or a JSON array of records (as the local publisher sends them). Records for tables outside the
contract are :class:`Ignored`, ``control`` records are :class:`ControlRecord`; neither is an error.
Anything else that does not fit the format raises :class:`InvalidRecord` with a reason precise
enough to log next to a dead-lettered message.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

# The contract's tables (replica-schema.sql). Changes to any other table are ignored.
KNOWN_TABLES: frozenset[str] = frozenset({"users", "claims", "claim_requirements"})

_DMS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$")
_DB_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d{1,6})?$")


class Operation(StrEnum):
    LOAD = "load"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


_OPERATIONS = frozenset(op.value for op in Operation)

# Tie-break for two changes of one row that share updated_at and have no binlog position (DMS
# records): an update follows the insert, a delete follows both.
_OPERATION_RANK = {Operation.LOAD: 0, Operation.INSERT: 0, Operation.UPDATE: 1, Operation.DELETE: 2}


class InvalidRecord(ValueError):
    """A body or record that does not fit the format. ``reason`` is one human-readable line;
    ``index`` is the record's position in an array body (None for a single-record body)."""

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.reason = reason if index is None else f"record {index}: {reason}"
        self.index = index
        super().__init__(self.reason)


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One row change of a contract table. ``data`` keeps every column as sent (unknown columns
    included, harmlessly); date-times in it are strings ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""

    table: str
    operation: Operation
    data: dict[str, Any]
    before: dict[str, Any] | None
    committed_at: datetime  # metadata.timestamp, UTC
    schema: str
    transaction_id: int | None
    log_file: str | None  # binlog coordinates: the local publisher only, DMS does not send them
    log_pos: int | None
    updated_at: datetime | None = None  # data.updated_at parsed (naive, as stored), when present

    @property
    def id(self) -> int:
        return int(self.data["id"])


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """A table or DDL event (``record-type: control``): logged and skipped by the consumer."""

    table: str | None
    schema: str | None
    operation: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A data record for a table outside the contract."""

    table: str
    schema: str | None


ParsedRecord = ChangeRecord | ControlRecord | Ignored


class RowVersion(NamedTuple):
    """Orders two changes of the same row: greater is newer. Compare versions of one row only."""

    updated_at: datetime
    log_file: str
    log_pos: int
    operation_rank: int

    def key(self) -> str:
        """The same order as a string (byte-wise comparable), e.g. for storing beside the row in Redis."""
        # Fixed-width fields; a space ends the file name because it sorts before any name character.
        moment = self.updated_at.isoformat(sep="T", timespec="microseconds")
        return f"{moment} {self.log_file} {self.log_pos + 1:020d} {self.operation_rank}"


# --- parsing ----------------------------------------------------------------------------------------


def parse_message_body(body: str) -> list[ChangeRecord]:
    """The contract-table row changes in an SQS message body (one record or a JSON array), in body
    order. Control records and other tables are dropped; see :func:`parse_message` to see them."""
    return [item for item in parse_message(body) if isinstance(item, ChangeRecord)]


def parse_message(body: str) -> list[ParsedRecord]:
    """Every record of a body, classified. Raises :class:`InvalidRecord` on the first bad record:
    a body is applied whole or not at all, so that SQS redelivery and the dead-letter queue work
    on the unit SQS knows, the message."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InvalidRecord(f"body is not JSON: {exc}") from None
    if isinstance(payload, dict):
        return [parse_record(payload)]
    if isinstance(payload, list):
        return [parse_record(item, index=i) for i, item in enumerate(payload)]
    raise InvalidRecord(f"body must be a JSON object or array, not {_json_type(payload)}")


def parse_record(raw: object, *, index: int | None = None) -> ParsedRecord:
    """One decoded JSON record, validated."""

    def invalid(reason: str) -> InvalidRecord:
        return InvalidRecord(reason, index=index)

    if not isinstance(raw, dict):
        raise invalid(f"a record must be a JSON object, not {_json_type(raw)}")
    metadata = raw.get("metadata")
    if metadata is None:
        raise invalid("missing metadata")
    if not isinstance(metadata, dict):
        raise invalid(f"metadata must be an object, not {_json_type(metadata)}")

    record_type = metadata.get("record-type")
    table = metadata.get("table-name")
    schema = metadata.get("schema-name")
    if schema is not None and not isinstance(schema, str):
        raise invalid(f"metadata.schema-name must be a string, not {_json_type(schema)}")
    if record_type == "control":
        operation = metadata.get("operation")
        return ControlRecord(
            table=table if isinstance(table, str) else None,
            schema=schema,
            operation=operation if isinstance(operation, str) else None,
        )
    if record_type != "data":
        if record_type is None:
            raise invalid("missing metadata.record-type")
        raise invalid(f"bad metadata.record-type {record_type!r} (expected 'data' or 'control')")
    if not isinstance(table, str) or not table:
        raise invalid("missing metadata.table-name")
    if table not in KNOWN_TABLES:
        return Ignored(table=table, schema=schema)

    operation_text = metadata.get("operation")
    if operation_text is None:
        raise invalid("missing metadata.operation")
    if not (isinstance(operation_text, str) and operation_text in _OPERATIONS):
        raise invalid(f"bad metadata.operation {operation_text!r} (expected load, insert, update or delete)")
    operation = Operation(operation_text)

    committed_at = _parse_timestamp(metadata.get("timestamp"), invalid)

    data = raw.get("data")
    if data is None:
        raise invalid("missing data")
    if not isinstance(data, dict):
        raise invalid(f"data must be an object, not {_json_type(data)}")
    if "id" not in data or data["id"] is None:
        raise invalid(f"data without id ({table} {operation.value})")
    row_id = data["id"]
    if isinstance(row_id, bool) or not (isinstance(row_id, int) or (isinstance(row_id, str) and row_id.isdigit())):
        raise invalid(f"data.id must be an integer, not {row_id!r}")
    if isinstance(row_id, str):
        data = {**data, "id": int(row_id)}  # DMS may render BIGINT UNSIGNED as a string

    before = raw.get("before-image")
    if before is not None and not isinstance(before, dict):
        raise invalid(f"before-image must be an object, not {_json_type(before)}")

    updated_at = None
    if data.get("updated_at") is not None:
        try:
            updated_at = parse_db_datetime(data["updated_at"])
        except ValueError as exc:
            raise invalid(f"data.updated_at: {exc}") from None

    return ChangeRecord(
        table=table,
        operation=operation,
        data=data,
        before=before,
        committed_at=committed_at,
        schema=schema or "",
        transaction_id=_optional_int(metadata, "transaction-id", invalid),
        log_file=_optional_str(metadata, "log-file", invalid),
        log_pos=_optional_int(metadata, "log-position", invalid),
        updated_at=updated_at,
    )


def _parse_timestamp(value: object, invalid: Any) -> datetime:
    if value is None:
        raise invalid("missing metadata.timestamp")
    if not isinstance(value, str) or not _DMS_TIMESTAMP.match(value):
        raise invalid(f"unparseable metadata.timestamp {value!r} (expected ISO 8601, e.g. 2026-11-28T10:31:07.512345Z)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # matches the shape but not the calendar, e.g. month 13
        raise invalid(f"unparseable metadata.timestamp {value!r}") from None
    # DMS writes UTC with a Z; a timestamp without a zone is taken as UTC too.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _optional_int(metadata: Mapping[str, Any], key: str, invalid: Any) -> int | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise invalid(f"metadata.{key} must be an integer, not {value!r}")


def _optional_str(metadata: Mapping[str, Any], key: str, invalid: Any) -> str | None:
    value = metadata.get(key)
    if value is None or isinstance(value, str):
        return value
    raise invalid(f"metadata.{key} must be a string, not {value!r}")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_db_datetime(value: object) -> datetime:
    """A date-time from ``data`` (``YYYY-MM-DD HH:MM:SS[.ffffff]``), naive as the database stores it."""
    if not isinstance(value, str):
        raise ValueError(f"expected 'YYYY-MM-DD HH:MM:SS[.ffffff]', got {value!r}")
    match = _DB_DATETIME.match(value)
    if not match:
        raise ValueError(f"expected 'YYYY-MM-DD HH:MM:SS[.ffffff]', got {value!r}")
    try:
        return datetime.fromisoformat(f"{match.group(1)} {match.group(2)}{match.group(3) or ''}")
    except ValueError:
        raise ValueError(f"not a valid date-time: {value!r}") from None


# --- ordering ---------------------------------------------------------------------------------------


def position_key(record: ChangeRecord) -> tuple[str, int]:
    """Binlog order of a record: (log file, log position). Binlog file names carry a zero-padded
    sequence number, so they sort in order. Records without coordinates (DMS) sort first."""
    return (record.log_file or "", record.log_pos if record.log_pos is not None else -1)


_NO_TIME = datetime.min


def row_version(record: ChangeRecord) -> RowVersion:
    """The version of the row this record leaves behind: ``updated_at`` first (it is what the batch
    rebuild sees too), then the binlog position for changes within one second or that did not touch
    ``updated_at``, then the operation. The consumer applies a record only if its version is greater
    than the one it applied last for that row."""
    log_file, log_pos = position_key(record)
    return RowVersion(record.updated_at or _NO_TIME, log_file, log_pos, _OPERATION_RANK[record.operation])


# --- building (the local publisher) -----------------------------------------------------------------


def _metadata(
    schema: str,
    table: str,
    operation: Operation,
    timestamp: str,
    transaction_id: int | None,
    log_file: str | None,
    log_pos: int | None,
) -> dict[str, Any]:
    """A DMS record's ``metadata``; the binlog coordinates only where known."""
    metadata: dict[str, Any] = {
        "timestamp": timestamp,
        "record-type": "data",
        "operation": operation.value,
        "partition-key-type": "schema-table",
        "schema-name": schema,
        "table-name": table,
    }
    if transaction_id is not None:
        metadata["transaction-id"] = transaction_id
    if log_file is not None:
        metadata["log-file"] = log_file
    if log_pos is not None:
        metadata["log-position"] = log_pos
    return metadata


def to_dms_record(
    *,
    schema: str,
    table: str,
    operation: Operation | str,
    data: Mapping[str, Any],
    before: Mapping[str, Any] | None = None,
    committed_at: datetime,
    transaction_id: int | None = None,
    log_file: str | None = None,
    log_pos: int | None = None,
) -> dict[str, Any]:
    """A DMS record (a JSON-ready dict) for one row change. Column values are made JSON-safe the way
    DMS renders them: date-times as 'YYYY-MM-DD HH:MM:SS[.ffffff]', decimals as numbers, binary as
    UTF-8 text (base64 when it is not UTF-8). ``committed_at`` must be timezone-aware."""
    metadata = _metadata(
        schema, table, Operation(operation), format_timestamp(committed_at), transaction_id, log_file, log_pos
    )
    record: dict[str, Any] = {"data": {k: json_safe(v) for k, v in data.items()}}
    if before is not None:
        record["before-image"] = {k: json_safe(v) for k, v in before.items()}
    record["metadata"] = metadata
    return record


# What a published change event keeps of a row: its key, its version and the keys that say whose row it
# is. Nothing else leaves the database: names, phone numbers, dates of birth, addresses and free text
# would sit in SQS, the DLQ and the logs of every hop. The consumer reads the current row from the
# replica anyway (dialler.cdc.apply), so values in the event were never needed.
EVENT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "users": ("id", "updated_at"),
    "claims": ("id", "user_id", "updated_at"),
    "claim_requirements": ("id", "claim_id", "updated_at"),
}
_BEFORE_COLUMNS: Mapping[str, tuple[str, ...]] = {"claims": ("id", "user_id"), "claim_requirements": ("id", "claim_id")}


def without_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record from :func:`to_dms_record` as it is published: ``data`` with the key, version and owner
    columns only; ``before-image`` with the owner key (a row moved to another customer re-places
    both); ``metadata.changed-columns``: the names (never values) of the columns an update changed."""
    table = record["metadata"]["table-name"]
    keep = EVENT_COLUMNS.get(table, ("id",))
    data = record["data"]
    slim: dict[str, Any] = {"data": {k: data[k] for k in keep if k in data}}
    before = record.get("before-image")
    metadata = dict(record["metadata"])
    if before is not None:
        slim["before-image"] = {k: before[k] for k in _BEFORE_COLUMNS.get(table, ("id",)) if k in before}
        metadata["changed-columns"] = sorted(k for k in data.keys() | before.keys() if data.get(k) != before.get(k))
    slim["metadata"] = metadata
    return slim


def published_record(
    *,
    schema: str,
    table: str,
    operation: Operation,
    data: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    timestamp: str,
    transaction_id: int | None,
    log_file: str | None,
    log_pos: int | None,
) -> dict[str, Any]:
    """``without_values(to_dms_record(...))`` in one step, for the publisher's hot path: only the kept
    columns are made JSON-safe (a row image has dozens; converting them all to drop them cost the
    publisher more than decoding the binlog). ``timestamp`` is :func:`format_timestamp`'s, once per
    event. The same dict, key for key (a test holds the two to it)."""
    keep = EVENT_COLUMNS.get(table, ("id",))
    metadata = _metadata(schema, table, operation, timestamp, transaction_id, log_file, log_pos)
    record: dict[str, Any] = {"data": {k: json_safe(data[k]) for k in keep if k in data}}
    if before is not None:
        record["before-image"] = {k: json_safe(before[k]) for k in _BEFORE_COLUMNS.get(table, ("id",)) if k in before}
        metadata["changed-columns"] = sorted(
            k
            for k in data.keys() | before.keys()
            # Equal values render equally: JSON-safe forms are compared only where the raw ones differ.
            if data.get(k) != before.get(k) and json_safe(data.get(k)) != json_safe(before.get(k))
        )
    record["metadata"] = metadata
    return record


def format_timestamp(moment: datetime) -> str:
    """``2026-11-28T10:31:07.512345Z``, as DMS writes ``metadata.timestamp``."""
    if moment.tzinfo is None:
        raise ValueError("committed_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_safe(value: Any) -> Any:
    """A database value as DMS puts it in JSON."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        fmt = "%Y-%m-%d %H:%M:%S.%f" if value.microsecond else "%Y-%m-%d %H:%M:%S"
        return value.strftime(fmt)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):  # MySQL TIME arrives as a duration
        seconds = int(value.total_seconds())
        sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
        return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):  # MySQL SET
        return sorted(json_safe(v) for v in value)
    if isinstance(value, dict):  # JSON columns
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)
