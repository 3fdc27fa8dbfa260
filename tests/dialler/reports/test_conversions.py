"""Conversions seen through CDC: a signature's arrival and a requirement leaving PENDING are written once
each (a redelivered change adds nothing), with the source's commit time; other changes are not conversions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.records import ChangeRecord, Operation
from dialler.reports.conversions import record_conversions
from dialler.runtime import Stores
from tests.support.replica_customers import add_customer

AT = datetime(2026, 10, 27, 10, 0, tzinfo=UTC)


def change(table: str, data: dict[str, object], before: dict[str, object] | None, pos: int) -> ChangeRecord:
    return ChangeRecord(
        table=table,
        operation=Operation.UPDATE,
        data=data,
        before=before,
        committed_at=AT,
        schema="claims",
        transaction_id=None,
        log_file="binlog.000001",
        log_pos=pos,
    )


async def test_signatures_and_documents_are_recorded_once(stores: Stores, replica_writer: AsyncEngine) -> None:
    customer = await add_customer(replica_writer, 42)
    records = [
        change("users", {"id": 42, "current_signature_file_id": 9}, {"id": 42, "current_signature_file_id": None}, 1),
        # Already signed: a new signature file is not a conversion.
        change("users", {"id": 43, "current_signature_file_id": 10}, {"id": 43, "current_signature_file_id": 9}, 2),
        change(
            "claim_requirements",
            {"id": customer.requirement_id, "claim_id": customer.claim_id, "status": "COMPLETED"},
            {"id": customer.requirement_id, "claim_id": customer.claim_id, "status": "PENDING"},
            3,
        ),
        # Still pending (another column changed): not a conversion.
        change(
            "claim_requirements",
            {"id": 7, "claim_id": customer.claim_id, "status": "PENDING"},
            {"id": 7, "claim_id": customer.claim_id, "status": "PENDING"},
            4,
        ),  # fmt: skip
    ]

    await record_conversions(stores.postgres, stores.replica, records)
    await record_conversions(stores.postgres, stores.replica, records)  # redelivered

    async with stores.postgres.connect() as conn:
        rows = (
            await conn.execute(text("SELECT user_id, kind, occurred_at FROM conversion_events ORDER BY kind"))
        ).all()
    assert [tuple(r) for r in rows] == [(42, "document", AT), (42, "signature", AT)]
