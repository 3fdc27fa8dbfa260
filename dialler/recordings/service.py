"""Recordings: stored from Twilio's recording status callback, listed per customer or session, and
purged when their retention has run out.

Retention (FCA CMCOB 2.3.6): a recording is kept at least 12 months (``recording_retention_months``,
never lower) from the *latest* end of the claims it is about: each of its claims must be closed on the
replica (won | lost | withdrawn | closed, or soft-deleted) and the last of them must have ended longer
ago than the period. The replica has no closed-at column: a closed claim's ``updated_at`` is its end,
which errs on the side of keeping (a later edit only moves it later). A recording whose customer had no
claim at all is kept (nothing says when to let it go).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler.calls.models import CallSession
from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES
from dialler.recordings.models import CallRecording

CLOSED_CLAIM_STATUSES: Final = ("won", "lost", "withdrawn", "closed")

_CLAIMS_OF = text("SELECT id, status, deleted_at IS NOT NULL AS deleted FROM claims WHERE user_id = :u ORDER BY id")
_CLAIM_ENDS = text(
    "SELECT id, status, deleted_at IS NOT NULL AS deleted,"
    " TIMESTAMPDIFF(SECOND, '1970-01-01', GREATEST(updated_at, COALESCE(deleted_at, updated_at))) AS ended"
    " FROM claims WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _when(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


async def store_from_callback(
    *, postgres: AsyncEngine, replica: AsyncEngine, form: Mapping[str, str], workflow_id: str | None, at: datetime
) -> str | None:
    """Store (or bring up to date) the recording a status callback describes; its sid, or None when
    the callback names none. The session is the one whose call Twilio recorded (by call sid), else the
    customer's latest one (the workflow id in the signed URL names the customer)."""
    sid, call_sid = form.get("RecordingSid", ""), form.get("CallSid", "")
    if not sid.startswith("RE"):
        return None
    async with postgres.connect() as conn:
        session = (
            await conn.execute(
                select(CallSession.id, CallSession.user_id).where(CallSession.twilio_call_sid == call_sid)
            )
        ).first()
        user_id = session.user_id if session else _user_of(workflow_id)
        if session is None and user_id is not None:
            session = (
                await conn.execute(
                    select(CallSession.id, CallSession.user_id)
                    .where(CallSession.user_id == user_id)
                    .order_by(CallSession.started_at.desc())
                    .limit(1)
                )
            ).first()
    claim_ids: list[int] = []
    if user_id is not None:
        async with replica.connect() as rconn:
            claims = (await rconn.execute(_CLAIMS_OF, {"u": user_id})).all()
        # The claims the call was about: the active ones; all of them if none is active any more.
        active = [int(c.id) for c in claims if c.status in ACTIVE_CLAIM_STATUSES and not c.deleted]
        claim_ids = active or [int(c.id) for c in claims]
    stmt = insert(CallRecording).values(
        sid=sid,
        call_sid=call_sid,
        call_session_id=session.id if session else None,
        user_id=user_id,
        claim_ids=claim_ids,
        duration_s=_int(form.get("RecordingDuration")),
        channels=_int(form.get("RecordingChannels")),
        status=form.get("RecordingStatus", "completed")[:16],
        source=form.get("RecordingSource", "")[:32] or None,
        started_at=_when(form.get("RecordingStartTime")),
        created_at=at,
        updated_at=at,
    )
    async with postgres.begin() as conn:
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["sid"],
                set_={
                    "status": stmt.excluded.status,
                    "duration_s": stmt.excluded.duration_s,
                    "channels": stmt.excluded.channels,
                    "updated_at": stmt.excluded.updated_at,
                },
                where=CallRecording.deleted_at.is_(None),
            )
        )
    return sid


def _user_of(workflow_id: str | None) -> int | None:
    if workflow_id and workflow_id.startswith("call-") and workflow_id[5:].isdigit():
        return int(workflow_id[5:])
    return None


async def list_recordings(
    session: AsyncSession, *, user_id: int | None, call_session_id: uuid.UUID | None, limit: int = 100
) -> list[CallRecording]:
    query = select(CallRecording).order_by(CallRecording.created_at.desc()).limit(limit)
    if user_id is not None:
        query = query.where(CallRecording.user_id == user_id)
    if call_session_id is not None:
        query = query.where(CallRecording.call_session_id == call_session_id)
    return list((await session.scalars(query)).all())


def months_before(at: datetime, months: int) -> datetime:
    """The same instant ``months`` calendar months earlier (the last day of a shorter month)."""
    total = at.year * 12 + at.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    days = [
        31,
        29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ]
    return at.replace(year=year, month=month, day=min(at.day, days[month - 1]))


@dataclass(frozen=True)
class Expired:
    sid: str
    user_id: int | None


async def expired(
    *, postgres: AsyncEngine, replica: AsyncEngine, now: datetime, retention_months: int, limit: int = 500
) -> list[Expired]:
    """Recordings not yet deleted whose every claim ended more than the retention period ago."""
    if retention_months < 12:
        raise ValueError("recordings are kept at least 12 months after the claim ends (CMCOB 2.3.6)")
    cutoff = months_before(now, retention_months).timestamp()
    found: list[Expired] = []
    after = ""
    while len(found) < limit:
        async with postgres.connect() as conn:
            batch = (
                await conn.execute(
                    select(CallRecording.sid, CallRecording.user_id, CallRecording.claim_ids)
                    .where(CallRecording.deleted_at.is_(None), CallRecording.sid > after)
                    .order_by(CallRecording.sid)
                    .limit(1000)
                )
            ).all()
        if not batch:
            break
        after = batch[-1].sid
        ends = await _claim_ends(replica, sorted({c for r in batch for c in r.claim_ids}))
        for r in batch:
            if _may_go(r.claim_ids, ends, cutoff):
                found.append(Expired(r.sid, r.user_id))
    return found[:limit]


async def _claim_ends(replica: AsyncEngine, ids: Sequence[int]) -> dict[int, float | None]:
    """When each claim ended (epoch seconds), None while it is open."""
    ends: dict[int, float | None] = {}
    if ids:
        async with replica.connect() as conn:
            for c in (await conn.execute(_CLAIM_ENDS, {"ids": list(ids)})).all():
                closed = c.deleted or c.status in CLOSED_CLAIM_STATUSES
                ends[int(c.id)] = float(c.ended) if closed and c.ended is not None else None
    return ends


def _last_end(claim_ids: Sequence[int], ends: Mapping[int, float | None]) -> float | None:
    """The rule: a recording may go once every claim it belongs to has ended; None while any is open.
    A claim missing from the replica (hard-deleted upstream) gives no end date: keep."""
    if not claim_ids:
        return None
    last = [ends.get(c) for c in claim_ids]
    return None if any(e is None for e in last) else max(e for e in last if e is not None)


def _may_go(claim_ids: Sequence[int], ends: Mapping[int, float | None], cutoff: float) -> bool:
    last = _last_end(claim_ids, ends)
    return last is not None and last <= cutoff


@dataclass(frozen=True)
class CustomerRecordings:
    erasable: list[str]  # sids past their period
    kept: list[tuple[str, datetime | None]]  # sid, when it becomes erasable (None: a claim is still open)


async def of_customer(
    *, postgres: AsyncEngine, replica: AsyncEngine, user_id: int, now: datetime, retention_months: int
) -> CustomerRecordings:
    """A customer's recordings not yet deleted, split by the retention rule (as :func:`expired`)."""
    cutoff = months_before(now, retention_months).timestamp()
    async with postgres.connect() as conn:
        rows = (
            await conn.execute(
                select(CallRecording.sid, CallRecording.claim_ids)
                .where(CallRecording.user_id == user_id, CallRecording.deleted_at.is_(None))
                .order_by(CallRecording.sid)
            )
        ).all()
    ends = await _claim_ends(replica, sorted({c for r in rows for c in r.claim_ids}))
    erasable: list[str] = []
    kept: list[tuple[str, datetime | None]] = []
    for r in rows:
        if _may_go(r.claim_ids, ends, cutoff):
            erasable.append(r.sid)
        else:
            last = _last_end(r.claim_ids, ends)
            # months_before with a negative count: the same calendar arithmetic forwards.
            kept.append(
                (r.sid, None if last is None else months_before(datetime.fromtimestamp(last, UTC), -retention_months))
            )
    return CustomerRecordings(erasable, kept)


async def mark_deleted(postgres: AsyncEngine, sid: str, *, at: datetime) -> None:
    async with postgres.begin() as conn:
        await conn.execute(
            update(CallRecording)
            .where(CallRecording.sid == sid, CallRecording.deleted_at.is_(None))
            .values(deleted_at=at, status="deleted", updated_at=at)
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
