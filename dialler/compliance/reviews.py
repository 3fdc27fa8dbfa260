"""The review queue: outcomes a person must look at, and the compliance desk's work on them.

An outcome whose disposition carries ``needs_review`` (complaint, vulnerable_flagged, deceased) becomes
one review item, written in the same transaction as the outcome by the session's finishing step
(:func:`open_for_outcome`, idempotent: one item per session and kind). Complaints carry the FCA DISP 1.6
deadlines: a prompt acknowledgement (:data:`ACKNOWLEDGE_WITHIN`) and a final response within 8 weeks
(:data:`FINAL_RESPONSE_WITHIN`). Every action of the desk is audited with the change it makes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.audit.service import AuditContext, record_ctx
from dialler.calls.dispositions import EFFECTS, Disposition
from dialler.calls.models import CallOutcome
from dialler.compliance.models import ReviewItem
from dialler.errors import Conflict, Invalid, NotFound


class ReviewKind(StrEnum):
    COMPLAINT = "complaint"
    VULNERABLE = "vulnerable"
    DECEASED = "deceased"
    # A customer's STOP on the same UK day as a call to them: did the call upset them?
    STOP_AFTER_CALL = "stop_after_call"


class ReviewStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"


KIND_OF: Final[dict[Disposition, ReviewKind]] = {
    Disposition.COMPLAINT: ReviewKind.COMPLAINT,
    Disposition.VULNERABLE_FLAGGED: ReviewKind.VULNERABLE,
    Disposition.DECEASED: ReviewKind.DECEASED,
}
# Every disposition that needs a review has a kind: a new one cannot reach nobody again.
assert set(KIND_OF) == {d for d, e in EFFECTS.items() if e.needs_review}

# DISP 1.6.1: acknowledge "promptly" (we hold ourselves to 5 days); DISP 1.6.2: final response by the
# end of 8 weeks after receipt, else the customer may go to the Financial Ombudsman.
ACKNOWLEDGE_WITHIN: Final = timedelta(days=5)
FINAL_RESPONSE_WITHIN: Final = timedelta(weeks=8)
RESOLUTION_MAX = 4000


@dataclass(frozen=True)
class Deadlines:
    acknowledge_due_at: datetime | None
    final_response_due_at: datetime | None


def deadlines(kind: ReviewKind, received_at: datetime) -> Deadlines:
    if kind is ReviewKind.COMPLAINT:
        return Deadlines(received_at + ACKNOWLEDGE_WITHIN, received_at + FINAL_RESPONSE_WITHIN)
    return Deadlines(None, None)


async def open_for_outcome(
    conn: AsyncConnection,
    *,
    disposition: Disposition,
    session_id: uuid.UUID,
    user_id: int,
    agent_id: int | None,
    at: datetime,
) -> None:
    """The review item of a session's outcome, if its disposition needs one (on the caller's
    transaction, after the outcome row; a retry adds nothing)."""
    kind = KIND_OF.get(disposition)
    if kind is None:
        return
    outcome_id = await conn.scalar(select(CallOutcome.id).where(CallOutcome.call_session_id == session_id))
    due = deadlines(kind, at)
    await conn.execute(
        insert(ReviewItem)
        .values(
            kind=kind.value,
            user_id=user_id,
            call_session_id=session_id,
            call_outcome_id=outcome_id,
            agent_id=agent_id,
            status=ReviewStatus.OPEN.value,
            created_at=at,
            acknowledge_due_at=due.acknowledge_due_at,
            final_response_due_at=due.final_response_due_at,
        )
        .on_conflict_do_nothing(constraint="uq_review_items_session_kind")
    )


@dataclass(frozen=True)
class StopReviewInput:
    """The inbound STOP (its sms_messages id) and the customers of its number: ids only."""

    message_id: int
    user_ids: list[int]


_STOP_AT = text("SELECT created_at FROM sms_messages WHERE id = :id")
_CALL_THAT_DAY = text(
    "SELECT id, agent_id FROM call_sessions WHERE user_id = :u AND started_at >= :day_start"
    " AND started_at <= :stopped_at ORDER BY started_at DESC LIMIT 1"
)


async def open_for_stop(
    conn: AsyncConnection, *, message_id: int, user_ids: list[int], day_start_of: Callable[[datetime], datetime]
) -> int:
    """A review item per customer whose STOP came on the same UK day as a call to them, keyed by that
    call's session (one per session, however often the fan-out step is retried). ``day_start_of``
    gives the real instant at which the business day of an instant began. Returns the items opened."""
    stopped_at = await conn.scalar(_STOP_AT, {"id": message_id})
    if stopped_at is None:
        return 0
    opened = 0
    for user_id in user_ids:
        call = (
            await conn.execute(
                _CALL_THAT_DAY, {"u": user_id, "day_start": day_start_of(stopped_at), "stopped_at": stopped_at}
            )
        ).one_or_none()
        if call is None:
            continue
        result = await conn.execute(
            insert(ReviewItem)
            .values(
                kind=ReviewKind.STOP_AFTER_CALL.value,
                user_id=user_id,
                call_session_id=call.id,
                agent_id=call.agent_id,
                status=ReviewStatus.OPEN.value,
                created_at=stopped_at,
            )
            .on_conflict_do_nothing(constraint="uq_review_items_session_kind")
        )
        opened += result.rowcount or 0
    return opened


@dataclass(frozen=True)
class ReviewView:
    item: ReviewItem
    notes: str | None
    disposition: str | None


async def list_items(
    session: AsyncSession,
    *,
    status: ReviewStatus | None = None,
    kind: ReviewKind | None = None,
    assignee_agent_id: int | None = None,
    user_id: int | None = None,
    overdue_at: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
    item_id: int | None = None,
) -> list[ReviewView]:
    """Newest first, keyset-paged by id. ``overdue_at``: only complaints still without a final
    response whose deadline falls before that instant (the alert before it passes)."""
    query = (
        select(ReviewItem, CallOutcome.notes, CallOutcome.disposition)
        .outerjoin(CallOutcome, CallOutcome.id == ReviewItem.call_outcome_id)
        .order_by(ReviewItem.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(ReviewItem.status == status.value)
    if kind is not None:
        query = query.where(ReviewItem.kind == kind.value)
    if assignee_agent_id is not None:
        query = query.where(ReviewItem.assignee_agent_id == assignee_agent_id)
    if user_id is not None:
        query = query.where(ReviewItem.user_id == user_id)
    if overdue_at is not None:
        query = query.where(
            ReviewItem.final_response_due_at.is_not(None),
            ReviewItem.final_response_due_at <= overdue_at,
            ReviewItem.status != ReviewStatus.CLOSED.value,
        )
    if before_id is not None:
        query = query.where(ReviewItem.id < before_id)
    if item_id is not None:
        query = query.where(ReviewItem.id == item_id)
    rows = (await session.execute(query)).all()
    return [ReviewView(item, notes, disposition) for item, notes, disposition in rows]


async def get_item(session: AsyncSession, item_id: int) -> ReviewView:
    found = await list_items(session, item_id=item_id, limit=1)
    if not found:
        raise NotFound("No such review item.")
    return found[0]


async def _locked(session: AsyncSession, item_id: int) -> ReviewItem:
    item = await session.scalar(select(ReviewItem).where(ReviewItem.id == item_id).with_for_update())
    if item is None:
        raise NotFound("No such review item.")
    return item


async def acknowledge(session: AsyncSession, ctx: AuditContext, item_id: int, *, at: datetime) -> ReviewItem:
    """Take the item in hand (open → in_progress); for a complaint, the DISP acknowledgement."""
    item = await _locked(session, item_id)
    if item.status == ReviewStatus.CLOSED:
        raise Conflict("This review item is closed.")
    if item.acknowledged_at is None:
        item.acknowledged_at = at
        item.status = ReviewStatus.IN_PROGRESS.value
        await record_ctx(ctx, session=session, action="review.acknowledged", subject_type="review", subject_id=item.id)
    await session.commit()
    return item


async def assign(session: AsyncSession, ctx: AuditContext, item_id: int, *, assignee_agent_id: int) -> ReviewItem:
    item = await _locked(session, item_id)
    if item.status == ReviewStatus.CLOSED:
        raise Conflict("This review item is closed.")
    assignee = await session.get(Agent, assignee_agent_id)
    if assignee is None or not assignee.active:
        raise Invalid("No such active agent to assign to.")
    if Permission.REVIEWS_MANAGE not in permissions_of(assignee.role):
        raise Invalid("Review items are assigned to compliance users only.")
    before = item.assignee_agent_id
    item.assignee_agent_id = assignee_agent_id
    if item.status == ReviewStatus.OPEN:
        item.status = ReviewStatus.IN_PROGRESS.value
    await record_ctx(
        ctx,
        session=session,
        action="review.assigned",
        subject_type="review",
        subject_id=item.id,
        details={"from": before, "to": assignee_agent_id},
    )
    await session.commit()
    return item


async def resolve(
    session: AsyncSession, ctx: AuditContext, item_id: int, *, resolution: str, at: datetime
) -> ReviewItem:
    """Close the item with what was done (for a complaint: the final response sent)."""
    text = resolution.strip()
    if not text:
        raise Invalid("A resolution says what was done.")
    if len(text) > RESOLUTION_MAX:
        raise Invalid(f"A resolution is limited to {RESOLUTION_MAX} characters.")
    item = await _locked(session, item_id)
    if item.status == ReviewStatus.CLOSED:
        raise Conflict("This review item is already closed.")
    item.status = ReviewStatus.CLOSED.value
    item.resolution = text
    item.resolved_at = at
    item.resolved_by_agent_id = ctx.actor_agent_id
    if item.acknowledged_at is None:
        item.acknowledged_at = at
    late = item.final_response_due_at is not None and at > item.final_response_due_at
    await record_ctx(
        ctx,
        session=session,
        action="review.resolved",
        subject_type="review",
        subject_id=item.id,
        details={"kind": item.kind, "after_deadline": late},
    )
    await session.commit()
    return item
