"""Conversions seen through CDC: a signature arrived, or a document requirement was met.

The replica keeps only current rows, so *when* a customer converted is known only from the change
that did it: ``users.current_signature_file_id`` going from NULL to set, or a ``claim_requirements``
row leaving ``PENDING``. The CDC apply step calls ``record_conversions`` with its fresh records; each
conversion is one row keyed by the change (table, row, version), so a redelivery adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.records import ChangeRecord, row_version


@dataclass(frozen=True)
class Conversion:
    kind: str  # signature | document
    source_key: str
    occurred_at: datetime
    user_id: int | None = None  # signatures: the user row itself
    claim_id: int | None = None  # documents: the requirement's claim (its owner read from the replica)


def conversions(records: Sequence[ChangeRecord]) -> list[Conversion]:
    """The conversions among change records (a pure function; before-images decide, since only a
    change *from* unsigned / pending counts)."""
    found = []
    for r in records:
        if r.operation != "update" or r.before is None:
            continue
        key = f"{r.table}:{r.id}:{row_version(r).key()}"[:100]
        if r.table == "users":
            if r.before.get("current_signature_file_id") is None and r.data.get("current_signature_file_id"):
                found.append(Conversion("signature", key, r.committed_at, user_id=r.id))
        elif r.table == "claim_requirements":
            was, now = r.before.get("status"), r.data.get("status")
            if was == "PENDING" and now not in (None, "PENDING") and isinstance(r.data.get("claim_id"), int):
                found.append(Conversion("document", key, r.committed_at, claim_id=r.data["claim_id"]))
    return found


_OWNERS = text("SELECT id, user_id FROM claims WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
_INSERT = text(
    "INSERT INTO conversion_events (user_id, kind, source_key, occurred_at)"
    " VALUES (:user_id, :kind, :source_key, :occurred_at) ON CONFLICT (source_key) DO NOTHING"
)


async def record_conversions(postgres: AsyncEngine, replica: AsyncEngine, records: Sequence[ChangeRecord]) -> int:
    """Write the conversions among ``records``; returns how many were found (idempotent)."""
    found = conversions(records)
    if not found:
        return 0
    claims = sorted({c.claim_id for c in found if c.claim_id is not None})
    owners: dict[int, int] = {}
    if claims:
        async with replica.connect() as conn:
            owners = {row.id: row.user_id for row in await conn.execute(_OWNERS, {"ids": claims})}
    rows = []
    for c in found:
        user = c.user_id if c.user_id is not None else owners.get(c.claim_id or -1)
        if user is not None:
            rows.append({"user_id": user, "kind": c.kind, "source_key": c.source_key, "occurred_at": c.occurred_at})
    if rows:
        async with postgres.begin() as conn:
            await conn.execute(_INSERT, rows)
    return len(found)
