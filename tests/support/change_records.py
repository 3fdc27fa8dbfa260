"""Change records as the CDC consumer receives them (the DMS format), for tests of its apply path."""

from __future__ import annotations

from datetime import UTC, datetime

from dialler.cdc.records import ChangeRecord, parse_record, to_dms_record


def change(user_id: int, pos: int, updated: str = "2026-11-28 10:00:00") -> ChangeRecord:
    parsed = parse_record(
        to_dms_record(
            schema="claims_app",
            table="users",
            operation="update",
            data={"id": user_id, "updated_at": updated},
            committed_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
            log_file="binlog.000001",
            log_pos=pos,
        )
    )
    assert isinstance(parsed, ChangeRecord)
    return parsed
