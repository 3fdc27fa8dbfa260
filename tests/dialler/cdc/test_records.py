"""The DMS record format: parsing, validation reasons, ordering keys, and the builder round trip."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from dialler.cdc.records import (
    ChangeRecord,
    ControlRecord,
    Ignored,
    InvalidRecord,
    Operation,
    format_timestamp,
    json_safe,
    parse_db_datetime,
    parse_message,
    parse_message_body,
    position_key,
    published_record,
    row_version,
    to_dms_record,
    without_values,
)


def record(**overrides: Any) -> dict[str, Any]:
    """A valid DMS update record of users, as in cdc-event-format.md; overrides replace parts."""
    metadata = {
        "timestamp": "2026-11-28T10:31:07.512345Z",
        "record-type": "data",
        "operation": "update",
        "partition-key-type": "schema-table",
        "schema-name": "claims_app",
        "table-name": "users",
        "transaction-id": 8589934592,
    }
    metadata.update(overrides.pop("metadata", {}))
    base: dict[str, Any] = {
        "data": {
            "id": 42,
            "current_signature_file_id": None,
            "status": "active",
            "updated_at": "2026-11-28 10:31:07",
        },
        "before-image": {"id": 42, "current_signature_file_id": 991},
        "metadata": metadata,
    }
    base.update(overrides)
    return base


def test_single_record_body() -> None:
    [change] = parse_message_body(json.dumps(record()))

    assert change == ChangeRecord(
        table="users",
        operation=Operation.UPDATE,
        data={
            "id": 42,
            "current_signature_file_id": None,
            "status": "active",
            "updated_at": "2026-11-28 10:31:07",
        },
        before={"id": 42, "current_signature_file_id": 991},
        committed_at=datetime(2026, 11, 28, 10, 31, 7, 512345, tzinfo=UTC),
        schema="claims_app",
        transaction_id=8589934592,
        log_file=None,
        log_pos=None,
        updated_at=datetime(2026, 11, 28, 10, 31, 7),
    )
    assert change.id == 42


def test_array_body_keeps_order_and_skips_control_and_unknown_tables() -> None:
    body = json.dumps(
        [
            record(metadata={"operation": "insert", "table-name": "claims"}, data={"id": 1, "user_id": 42}),
            {"metadata": {"record-type": "control", "operation": "create-table", "table-name": "users"}},
            record(metadata={"table-name": "audit_trail"}, data={"no_id": True}),
            record(metadata={"operation": "delete", "table-name": "claim_requirements"}, data={"id": 7}),
        ]
    )

    changes = parse_message_body(body)
    parsed = parse_message(body)

    assert [(c.table, c.operation, c.id) for c in changes] == [
        ("claims", Operation.INSERT, 1),
        ("claim_requirements", Operation.DELETE, 7),
    ]
    assert parsed[1] == ControlRecord(table="users", schema=None, operation="create-table")
    assert parsed[2] == Ignored(table="audit_trail", schema="claims_app")


def test_empty_array_is_no_changes() -> None:
    assert parse_message_body("[]") == []


def test_unknown_columns_are_kept_harmlessly() -> None:
    data = {
        "id": 5,
        "status": "active",
        "favourite_colour": "teal",
        "updated_at": "2026-01-02 03:04:05.250000",
    }
    [change] = parse_message_body(json.dumps(record(data=data)))

    assert change.data["favourite_colour"] == "teal"
    assert change.updated_at == datetime(2026, 1, 2, 3, 4, 5, 250000)


def test_load_record_and_lenient_forms() -> None:
    raw = record(metadata={"operation": "load", "timestamp": "2026-11-28 10:31:07", "transaction-id": "17"})
    raw["data"] = {"id": "18446744073709551615"}  # BIGINT UNSIGNED as a string
    del raw["before-image"]

    [change] = parse_message_body(json.dumps(raw))

    assert change.operation is Operation.LOAD
    assert change.id == 18446744073709551615
    assert change.committed_at == datetime(2026, 11, 28, 10, 31, 7, tzinfo=UTC)  # no zone: UTC
    assert change.transaction_id == 17
    assert change.before is None and change.updated_at is None


def test_timestamp_with_offset_is_converted_to_utc() -> None:
    [change] = parse_message_body(json.dumps(record(metadata={"timestamp": "2026-06-01T11:00:00+01:00"})))
    assert change.committed_at == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "body is not JSON"),
        ('"a string"', "body must be a JSON object or array, not a string"),
        ("[1]", "record 0: a record must be a JSON object, not a number"),
        (json.dumps({"data": {"id": 1}}), "missing metadata"),
        (json.dumps({"data": {"id": 1}, "metadata": []}), "metadata must be an object, not an array"),
        (json.dumps(record(metadata={"record-type": None})), "missing metadata.record-type"),
        (json.dumps(record(metadata={"record-type": "row"})), "bad metadata.record-type 'row'"),
        (json.dumps(record(metadata={"table-name": None})), "missing metadata.table-name"),
        (json.dumps(record(metadata={"operation": None})), "missing metadata.operation"),
        (
            json.dumps(record(metadata={"operation": "upsert"})),
            "bad metadata.operation 'upsert' (expected load",
        ),
        (json.dumps(record(metadata={"timestamp": None})), "missing metadata.timestamp"),
        (
            json.dumps(record(metadata={"timestamp": "yesterday"})),
            "unparseable metadata.timestamp 'yesterday'",
        ),
        (
            json.dumps(record(metadata={"timestamp": "2026-13-45T10:00:00Z"})),
            "unparseable metadata.timestamp",
        ),
        (json.dumps(record(metadata={"timestamp": 1764325867})), "unparseable metadata.timestamp 1764325867"),
        (json.dumps(record(data=None)), "missing data"),
        (json.dumps(record(data=[1, 2])), "data must be an object, not an array"),
        (json.dumps(record(data={"status": "active"})), "data without id (users update)"),
        (json.dumps(record(data={"id": None})), "data without id"),
        (json.dumps(record(data={"id": "forty-two"})), "data.id must be an integer, not 'forty-two'"),
        (json.dumps(record(data={"id": True})), "data.id must be an integer"),
        (json.dumps(record(**{"before-image": "x"})), "before-image must be an object, not a string"),
        (
            json.dumps(record(data={"id": 1, "updated_at": "28/11/2026"})),
            "data.updated_at: expected 'YYYY-MM-DD",
        ),
        (json.dumps(record(metadata={"log-position": "late"})), "metadata.log-position must be an integer"),
        (json.dumps(record(metadata={"log-file": 3})), "metadata.log-file must be a string"),
        (json.dumps(record(metadata={"schema-name": 3})), "metadata.schema-name must be a string"),
    ],
)
def test_invalid_records_say_why(body: str, reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_message_body(body)
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_invalid_record_in_an_array_names_its_index() -> None:
    body = json.dumps([record(), record(metadata={"operation": "merge"})])

    with pytest.raises(InvalidRecord) as caught:
        parse_message_body(body)

    assert caught.value.index == 1
    assert caught.value.reason.startswith("record 1: bad metadata.operation 'merge'")


def test_unknown_table_is_ignored_even_when_its_record_is_odd() -> None:
    # Other tables are none of our business: no id, no operation, still not an error.
    [item] = parse_message(json.dumps({"metadata": {"record-type": "data", "table-name": "sessions"}}))
    assert item == Ignored(table="sessions", schema=None)


def change(*, updated_at: str | None, log_file: str | None, log_pos: int | None, op: str = "update") -> ChangeRecord:
    data: dict[str, Any] = {"id": 1}
    if updated_at:
        data["updated_at"] = updated_at
    metadata: dict[str, Any] = {"operation": op, "log-file": log_file, "log-position": log_pos}
    [parsed] = parse_message_body(json.dumps(record(data=data, metadata=metadata)))
    return parsed


def test_position_key_orders_by_file_then_position() -> None:
    a = change(updated_at=None, log_file="binlog.000009", log_pos=90_000)
    b = change(updated_at=None, log_file="binlog.000010", log_pos=4_000)
    c = change(updated_at=None, log_file="binlog.000010", log_pos=5_000)
    dms = change(updated_at=None, log_file=None, log_pos=None)

    assert position_key(a) == ("binlog.000009", 90_000)
    assert sorted([c, dms, b, a], key=position_key) == [dms, a, b, c]


def test_row_version_prefers_updated_at_then_position_then_operation() -> None:
    older = change(updated_at="2026-11-28 10:00:00", log_file="binlog.000002", log_pos=999)
    newer = change(updated_at="2026-11-28 10:00:01", log_file="binlog.000001", log_pos=4)
    same_second_later = change(updated_at="2026-11-28 10:00:01", log_file="binlog.000001", log_pos=500)
    dms_update = change(updated_at="2026-11-28 10:00:01", log_file=None, log_pos=None, op="update")
    dms_delete = change(updated_at="2026-11-28 10:00:01", log_file=None, log_pos=None, op="delete")
    no_updated_at = change(updated_at=None, log_file="binlog.000003", log_pos=4)

    assert row_version(older) < row_version(newer) < row_version(same_second_later)
    assert row_version(dms_update) < row_version(dms_delete)
    assert row_version(no_updated_at) < row_version(older)
    versions = [row_version(r) for r in (older, newer, same_second_later, dms_update, dms_delete, no_updated_at)]
    assert sorted(versions) == sorted(versions, key=lambda v: v.key())  # the string form keeps the order


def test_to_dms_record_round_trips_through_the_parser() -> None:
    built = to_dms_record(
        schema="claims_app",
        table="users",
        operation="update",
        data={
            "id": 42,
            "date_of_birth": date(1980, 2, 29),
            "updated_at": datetime(2026, 11, 28, 10, 31, 7),
            "last_login": datetime(2026, 11, 28, 9, 0, 0, 123456),
            "balance": Decimal("12.50"),
            "count": Decimal("3"),
            "photo": b"\xff\x00",
            "nickname": "Zoë".encode(),
            "tags": {"b", "a"},
            "call_window": timedelta(hours=9, minutes=30),
            "deleted_at": None,
        },
        before={"id": 42, "updated_at": datetime(2026, 11, 28, 10, 0, 0)},
        committed_at=datetime(2026, 11, 28, 10, 31, 7, 512345, tzinfo=UTC),
        transaction_id=77,
        log_file="binlog.000001",
        log_pos=1050,
    )

    assert built["data"] == {
        "id": 42,
        "date_of_birth": "1980-02-29",
        "updated_at": "2026-11-28 10:31:07",
        "last_login": "2026-11-28 09:00:00.123456",
        "balance": 12.5,
        "count": 3,
        "photo": "/wA=",  # not UTF-8: base64, as DMS renders binary
        "nickname": "Zoë",
        "tags": ["a", "b"],
        "call_window": "09:30:00",
        "deleted_at": None,
    }
    assert built["metadata"] == {
        "timestamp": "2026-11-28T10:31:07.512345Z",
        "record-type": "data",
        "operation": "update",
        "partition-key-type": "schema-table",
        "schema-name": "claims_app",
        "table-name": "users",
        "transaction-id": 77,
        "log-file": "binlog.000001",
        "log-position": 1050,
    }
    [parsed] = parse_message_body(json.dumps([built]))
    assert parsed.before == {"id": 42, "updated_at": "2026-11-28 10:00:00"}
    assert parsed.updated_at == datetime(2026, 11, 28, 10, 31, 7)
    assert position_key(parsed) == ("binlog.000001", 1050)
    assert parsed.committed_at == datetime(2026, 11, 28, 10, 31, 7, 512345, tzinfo=UTC)


def test_to_dms_record_requires_an_aware_commit_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_dms_record(schema="s", table="users", operation="insert", data={"id": 1}, committed_at=datetime(2026, 1, 1))


def test_json_safe_and_db_datetime_helpers() -> None:
    assert json_safe(timedelta(hours=-1)) == "-01:00:00"
    assert json_safe({"k": [Decimal("0.1")]}) == {"k": [0.1]}
    assert parse_db_datetime("2026-02-28T23:59:59") == datetime(2026, 2, 28, 23, 59, 59)
    with pytest.raises(ValueError, match="not a valid date-time"):
        parse_db_datetime("2026-02-30 00:00:00")


def test_a_published_event_keeps_keys_versions_and_changed_column_names_only() -> None:
    row = {"id": 42, "first_name": "Ada", "phone_number": "07700 900123", "date_of_birth": date(1980, 2, 29)}
    full = to_dms_record(
        schema="claims_app",
        table="users",
        operation="update",
        data=row | {"postcode": "M1 1AA", "updated_at": datetime(2026, 11, 28, 10, 31, 7)},
        before=row | {"postcode": "SW1A 1AA", "updated_at": datetime(2026, 11, 28, 10, 0, 0)},
        committed_at=datetime(2026, 11, 28, 10, 31, 7, tzinfo=UTC),
    )

    sent = without_values(full)

    body = json.dumps(sent)
    assert [s for s in ("Ada", "07700", "1980-02-29", "M1 1AA", "SW1A") if s in body] == []
    assert sent["data"] == {"id": 42, "updated_at": "2026-11-28 10:31:07"}
    assert sent["metadata"]["changed-columns"] == ["postcode", "updated_at"]
    [parsed] = parse_message_body(body)
    assert (parsed.table, parsed.id, parsed.updated_at) == ("users", 42, datetime(2026, 11, 28, 10, 31, 7))


@pytest.mark.parametrize(
    ("table", "operation", "data", "before"),
    [
        (
            "users",
            "update",
            {"id": 7, "postcode": "M1 1AA", "amount": Decimal("1.50"), "n": 1},
            {"id": 7, "postcode": "B1", "amount": Decimal("1.5"), "n": 1.0},
        ),
        (
            "claims",
            "update",
            {"id": 3, "user_id": 9, "status": "won", "updated_at": datetime(2026, 1, 2, 3, 4, 5)},
            {"id": 3, "user_id": 8, "status": "won", "updated_at": datetime(2026, 1, 2, 3, 4, 5, 6)},
        ),
        ("claim_requirements", "insert", {"id": 5, "claim_id": 3, "blob": b"\xff\x00", "tags": {"a", "b"}}, None),
        ("claims", "delete", {"id": 4, "user_id": 2, "updated_at": None}, None),
        ("other_table", "update", {"id": 1, "x": 1}, {"id": 1, "x": 2}),
    ],
)
def test_the_publishers_fast_path_builds_the_same_published_record(
    table: str, operation: str, data: dict, before: dict | None
) -> None:
    committed_at = datetime(2026, 11, 28, 10, 31, 7, 512345, tzinfo=UTC)
    where = dict(
        schema="claims_app", table=table, data=data, before=before, transaction_id=12, log_file="b.000002", log_pos=99
    )

    slow = without_values(to_dms_record(operation=operation, committed_at=committed_at, **where))
    fast = published_record(operation=Operation(operation), timestamp=format_timestamp(committed_at), **where)

    assert json.dumps(fast) == json.dumps(slow)  # key order included: the bodies are byte for byte the same
