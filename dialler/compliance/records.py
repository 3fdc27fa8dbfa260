"""The decision log: every dial's gate decision, kept so that any attempt can be explained later."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dialler.compliance.gate import Decision
from dialler.compliance.models import ComplianceDecision

__all__ = ["RecordedDecision", "dial_refusal", "recent_decisions", "record_decision"]


async def record_decision(
    conn: AsyncConnection,
    decision: Decision,
    *,
    user_id: int,
    path: str,
    call_session_id: str | None = None,
    agent_id: int | None = None,
    basis: str | None = None,
) -> None:
    """Keep ``decision`` (idempotent per session and path: a retried step replaces its own record),
    with the ``basis`` of the call (:mod:`dialler.compliance.basis`)."""
    blocking = decision.blocking
    values = {
        "user_id": user_id,
        "channel": str(decision.channel),
        "path": path,
        "call_session_id": uuid.UUID(call_session_id) if call_session_id else None,
        "agent_id": agent_id,
        "allowed": decision.allowed,
        "blocking_rule": None if blocking is None else str(blocking.rule),
        "rules_checked": list(decision.rules_checked),
        "reasons": list(decision.reasons),
        "facts_versions": dict(decision.versions),
        "next_allowed_at": None if decision.allowed else decision.next_allowed_at,
        "decided_at": decision.at,
        "basis": basis,
    }
    statement = insert(ComplianceDecision).values(**values)
    if call_session_id is not None:
        statement = statement.on_conflict_do_update(
            constraint="uq_compliance_decisions_session_path",
            set_={k: statement.excluded[k] for k in values if k not in ("call_session_id", "path")},
        )
    await conn.execute(statement)


@dataclass(frozen=True)
class RecordedDecision:
    decided_at: datetime
    path: str
    channel: str
    allowed: bool
    blocking_rule: str | None
    reasons: list[str]
    rules_checked: list[str]
    next_allowed_at: datetime | None
    facts_versions: dict[str, object]
    call_session_id: str | None
    agent_id: int | None
    basis: str | None


async def recent_decisions(conn: AsyncConnection, *, user_id: int, limit: int = 10) -> list[RecordedDecision]:
    """The customer's last decisions, newest first."""
    rows = await conn.execute(
        select(ComplianceDecision)
        .where(ComplianceDecision.user_id == user_id)
        .order_by(ComplianceDecision.decided_at.desc(), ComplianceDecision.id.desc())
        .limit(limit)
    )
    return [_recorded(r) for r in rows]


def _recorded(r: Any) -> RecordedDecision:  # a row of compliance_decisions (Core: a Row)
    return RecordedDecision(
        decided_at=r.decided_at,
        path=r.path,
        channel=r.channel,
        allowed=r.allowed,
        blocking_rule=r.blocking_rule,
        reasons=list(r.reasons),
        rules_checked=list(r.rules_checked),
        next_allowed_at=r.next_allowed_at,
        facts_versions=dict(r.facts_versions),
        call_session_id=None if r.call_session_id is None else str(r.call_session_id),
        agent_id=r.agent_id,
        basis=r.basis,
    )


async def dial_refusal(conn: AsyncConnection, *, call_session_id: str) -> RecordedDecision | None:
    """The gate's refusal of this session's dial, if it refused it (what the agent's screen shows)."""
    try:
        key = uuid.UUID(call_session_id)
    except ValueError:
        return None
    row = (
        await conn.execute(
            select(ComplianceDecision).where(
                ComplianceDecision.call_session_id == key,
                ComplianceDecision.path == "dial",
                ComplianceDecision.allowed.is_(False),
            )
        )
    ).first()
    return None if row is None else _recorded(row)
