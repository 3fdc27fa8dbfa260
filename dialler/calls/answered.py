"""An answered call, as the carrier's webhooks see it: which session it belongs to, and the record of
an abandoned call, both read and written without a worker.

Ofcom's 2-second rule is decided in the web process, at the answer and at the bridge's end (see
``api/routes/voice.py``): a worker that is down, restarting or slow must not leave a customer in
silence, and an abandoned call must count (the 72 h cool-off and the abandoned rate read
``contact_attempts``) even before the session's workflow hears of it. So the session is read from
PostgreSQL (its row is written when it opens), and the abandoned attempt is written here, keyed by
the session like every attempt; the workflow's own record of the attempt later keeps it abandoned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from dialler.agents.presence import presence_key
from dialler.calls.models import CallSession, ContactAttempt
from dialler.calls.view import update_view
from dialler.pacing.floor import ready_agents
from dialler.queues.engine import StaleLease
from dialler.queues.phones import normalise_phone
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores

__all__ = [
    "AnsweredSession",
    "abandoned_unseen",
    "claim_agent",
    "find_session",
    "is_machine",
    "record_abandoned",
    "record_voicemail",
]

# Twilio's AnsweredBy verdicts that are not a person.
_MACHINE = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax")


def is_machine(answered_by: str | None) -> bool:
    return answered_by in _MACHINE


@dataclass(frozen=True)
class AnsweredSession:
    session_id: uuid.UUID
    workflow_id: str
    user_id: int
    agent_id: int | None
    progressive: bool
    phone_e164: str
    closed: bool


async def find_session(
    postgres: AsyncEngine, *, workflow_id: str, session_id: str | None, call_sid: str | None
) -> AnsweredSession | None:
    """The session a webhook is about: by the session id in its signed URL, else by the call's sid,
    else the customer's open session (``call-<user id>`` is reused across sessions)."""
    key: uuid.UUID | None = None
    if session_id:
        try:
            key = uuid.UUID(session_id)
        except ValueError:
            return None
    query = select(
        CallSession.id,
        CallSession.workflow_id,
        CallSession.user_id,
        CallSession.agent_id,
        CallSession.progressive,
        CallSession.phone_e164,
        CallSession.closed_at,
    ).where(CallSession.workflow_id == workflow_id)
    if key is not None:
        query = query.where(CallSession.id == key)
    else:
        matches: list[ColumnElement[bool]] = [CallSession.closed_at.is_(None)]
        if call_sid:
            matches.append(CallSession.twilio_call_sid == call_sid)
        by_sid = case((CallSession.twilio_call_sid == call_sid, 0), else_=1) if call_sid else None
        query = query.where(or_(*matches))
        if by_sid is not None:
            query = query.order_by(by_sid)
    query = query.order_by(CallSession.started_at.desc()).limit(1)
    async with postgres.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return AnsweredSession(
        session_id=row.id,
        workflow_id=row.workflow_id,
        user_id=row.user_id,
        agent_id=row.agent_id,
        progressive=row.progressive,
        phone_e164=row.phone_e164,
        closed=row.closed_at is not None,
    )


async def record_abandoned(
    postgres: AsyncEngine, *, session: AnsweredSession | None, called_number: str | None, at: datetime | None = None
) -> bool:
    """Record the attempt as abandoned (idempotent per session: a repeated webhook changes nothing; an
    attempt the session already recorded becomes abandoned). Without a session (it is gone), the call
    is still recorded against the number it reached: the cool-off is per number. False when there is
    no number to record against."""
    phone = (session.phone_e164 if session else "") or normalise_phone(called_number or "").e164
    if not phone:
        return False
    values = {
        "user_id": session.user_id if session else 0,
        "phone_e164": phone,
        "channel": "voice",
        "call_session_id": session.session_id if session else None,
        "agent_id": session.agent_id if session else None,
        "result": "abandoned",
        "abandoned": True,
        "attempted_at": at or datetime.now(UTC),
    }
    statement = insert(ContactAttempt).values(**values)
    if session is not None:
        statement = statement.on_conflict_do_update(
            index_elements=["call_session_id"], set_={"abandoned": True, "result": "abandoned"}
        )
    async with postgres.begin() as conn:
        await conn.execute(statement)
    return True


def abandoned_unseen(*, agent_put_through: bool, duration_s: int | None, allowance_s: float) -> bool:
    """An answered call the web process never decided (it was down at the answer, so Twilio played
    its apology or the fallback message; or at the bridge's end): abandoned, by the carrier's record,
    when no agent's phone was put through and the customer was on the line past the 2-second
    allowance. One who hung up within it was not left waiting, as at the bridge."""
    return not agent_put_through and (duration_s or 0) > allowance_s


async def record_voicemail(postgres: AsyncEngine, *, session: AnsweredSession, at: datetime | None = None) -> None:
    """Answering-machine detection found a machine: the attempt is ``voicemail`` (idempotent per
    session; the session's own record of the attempt later keeps it)."""
    statement = (
        insert(ContactAttempt)
        .values(
            user_id=session.user_id,
            phone_e164=session.phone_e164,
            channel="voice",
            call_session_id=session.session_id,
            agent_id=session.agent_id,
            result="voicemail",
            abandoned=False,
            attempted_at=at or datetime.now(UTC),
        )
        .on_conflict_do_update(index_elements=["call_session_id"], set_={"result": "voicemail"})
    )
    async with postgres.begin() as conn:
        await conn.execute(statement)


async def claim_agent(stores: Stores, call: AnsweredSession) -> AnsweredSession | None:
    """A pooled (predictive) call was answered: claim a ready agent of its queue for it, atomically
    (the lease passes from the call's pool id to the agent), and name them on the session's row and
    view. The call as the agent's, or None when it is not a pooled call awaiting an agent or nobody
    is ready: then it is abandoned (the caller plays the information message)."""
    engine = queue_engine(stores)
    lease = await engine.lease_of(call.user_id)
    if lease is None or lease.agent_id >= 0 or lease.session_id != str(call.session_id):
        return None
    candidates = await ready_agents(stores, lease.queue)
    if not candidates:
        return None
    try:
        agent_id = await engine.claim(
            user_id=call.user_id,
            token=lease.token,
            pool_id=lease.agent_id,
            candidates=[(a, presence_key(stores.settings, a)) for a in candidates],
            now=datetime.now(UTC).timestamp(),
        )
    except StaleLease:
        return None
    if agent_id is None:
        return None
    async with stores.postgres.begin() as conn:
        await conn.execute(
            update(CallSession)
            .where(CallSession.id == call.session_id, CallSession.agent_id.is_(None))
            .values(agent_id=agent_id)
        )
    await update_view(stores.redis, stores.settings, str(call.session_id), agent_id=agent_id)
    return replace(call, agent_id=agent_id)
