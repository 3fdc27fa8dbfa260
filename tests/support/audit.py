"""Reading the audit log in tests."""

from __future__ import annotations

from sqlalchemy import select

from dialler.audit.models import AuditEntry
from dialler.runtime import Stores


async def audit_rows(stores: Stores, action: str) -> list[AuditEntry]:
    async with stores.sessions() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())
