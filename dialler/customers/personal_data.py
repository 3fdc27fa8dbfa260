"""A customer's rights over what the dialler holds: a subject-access export (everything, as JSON) and
erasure (UK GDPR arts. 15 and 17).

Erasure removes or blanks what the dialler holds only for its own use — SMS bodies, call notes,
callback reasons, magic-link notes, unused magic links, the cached customer context in Redis — and
keeps, with the reason recorded, what the law requires it to keep:

* contact attempts, call sessions and compliance decisions: the evidence that calls respected the
  attempt limits and calling hours (Ofcom persistent-misuse policy, CONC/CMCOB contact rules);
* opt-outs and do-not-call entries: suppression must outlive the customer's data, or they would be
  called again (PECR);
* call recordings (held at Twilio) inside their CMCOB 2.3.6 period (at least 12 months after the
  claim ends, dialler.recordings.service's rule): the report gives the date each becomes erasable (none
  while a claim is still open). Recordings past it are deleted at Twilio, and text bodies are redacted
  there (activities/erasure.py, run by workflows/erasure.py before this module's part).

The audit row says what was erased and what was kept and why, with counts and ids, never contents.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.audit.service import AuditContext, record_ctx
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt, CustomerNote
from dialler.comms.models import MagicLink, SmsConversation, SmsMessage
from dialler.compliance.models import ComplianceDecision, DoNotCall, OptOut
from dialler.customers.context import forget

ERASED = "[erased]"
CLOSED_CLAIM_STATUSES = ("won", "lost", "withdrawn", "closed")


def _row(obj: Any, *columns: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in columns:
        value = getattr(obj, column)
        out[column] = (
            value.isoformat()
            if isinstance(value, datetime | date)
            else (str(value) if isinstance(value, uuid.UUID) else value)
        )
    return out


async def subject_access(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Everything the dialler's database holds about one customer (the main app answers for its own)."""

    async def rows(model: Any, *where: Any) -> list[Any]:
        return list((await session.scalars(select(model).where(*where))).all())

    conversation = (await rows(SmsConversation, SmsConversation.user_id == user_id)) or [None]
    messages = await rows(SmsMessage, SmsMessage.conversation_id == conversation[0].id) if conversation[0] else []
    sessions = await rows(CallSession, CallSession.user_id == user_id)
    return {
        "user_id": user_id,
        "call_sessions": [
            _row(s, "id", "phone_e164", "queue", "status", "started_at", "answered_at", "ended_at", "end_reason")
            for s in sorted(sessions, key=lambda s: s.started_at)
        ],
        "call_outcomes": [
            _row(o, "call_session_id", "disposition", "notes", "callback_at", "recorded_at")
            for o in await rows(CallOutcome, CallOutcome.user_id == user_id)
        ],
        "contact_attempts": [
            _row(a, "phone_e164", "channel", "result", "abandoned", "attempted_at")
            for a in await rows(ContactAttempt, ContactAttempt.user_id == user_id)
        ],
        "notes": [_row(n, "body", "created_at") for n in await rows(CustomerNote, CustomerNote.user_id == user_id)],
        "callbacks": [
            _row(c, "due_at", "status", "reason", "outcome") for c in await rows(Callback, Callback.user_id == user_id)
        ],
        "sms": {
            "phone_e164": conversation[0].phone_e164 if conversation[0] else None,
            "messages": [_row(m, "direction", "body", "status", "created_at") for m in messages],
        },
        "magic_links": [
            _row(m, "purpose", "claim_id", "created_at", "expires_at", "used_at", "note")
            for m in await rows(MagicLink, MagicLink.user_id == user_id)
        ],
        "opt_outs": [
            _row(o, "phone_e164", "keyword", "created_at") for o in await rows(OptOut, OptOut.user_id == user_id)
        ],
        "do_not_call": [
            _row(d, "phone_e164", "source", "reason", "created_at")
            for d in await rows(DoNotCall, DoNotCall.user_id == user_id)
        ],
        "compliance_decisions": [
            _row(d, "decided_at", "reasons")
            for d in await rows(ComplianceDecision, ComplianceDecision.user_id == user_id)
        ],
        "recordings": [{"call_sid": s.twilio_call_sid, "held_at": "twilio"} for s in sessions if s.twilio_call_sid],
    }


@dataclass
class ErasureReport:
    user_id: int
    erased: dict[str, int] = field(default_factory=dict)  # what -> how many rows
    kept: list[dict[str, Any]] = field(default_factory=list)  # {"what", "count", "why", "erasable_from"?}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErasureInput:
    """Whose data, and who asked (for the audit row): ids only, never contents."""

    user_id: int
    actor_agent_id: int | None = None
    client_ip: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class KeptRecording:
    sid: str
    erasable_from: str | None  # ISO date; None while a claim is open


@dataclass(frozen=True)
class TwilioErasure:
    """What was erased at Twilio: text bodies redacted, recordings past their period deleted, and the
    recordings kept with the date they become erasable."""

    message_bodies: int = 0
    recordings_deleted: int = 0
    recordings_kept: list[KeptRecording] = field(default_factory=list)


RECORDINGS_WHY = "CMCOB 2.3.6: call recordings kept at least 12 months after the claim ends"


async def erase(
    *,
    session: AsyncSession,
    redis: Redis,
    redis_prefix: str,
    user_id: int,
    ctx: AuditContext,
    at_twilio: TwilioErasure,
) -> ErasureReport:
    """Erase what may be erased, keep what must be kept (see the module), audit both; one transaction.
    Idempotent: erasing again erases nothing more and reports the same kept items."""
    report = ErasureReport(user_id)

    async def blank(what: str, statement: Any) -> None:
        result = await session.execute(statement)
        report.erased[what] = result.rowcount or 0  # type: ignore[attr-defined]

    conversation_ids = select(SmsConversation.id).where(SmsConversation.user_id == user_id).scalar_subquery()
    await blank(
        "sms_message_bodies",
        update(SmsMessage)
        .where(SmsMessage.conversation_id == conversation_ids, SmsMessage.body != ERASED)
        .values(body=ERASED),
    )
    await blank(
        "call_notes",
        update(CallOutcome).where(CallOutcome.user_id == user_id, CallOutcome.notes.is_not(None)).values(notes=None),
    )
    await blank("customer_notes", delete(CustomerNote).where(CustomerNote.user_id == user_id))
    await blank(
        "callback_reasons",
        update(Callback).where(Callback.user_id == user_id, Callback.reason.is_not(None)).values(reason=None),
    )
    await blank(
        "magic_link_notes",
        update(MagicLink).where(MagicLink.user_id == user_id, MagicLink.note.is_not(None)).values(note=None),
    )
    await blank(
        "unused_magic_links",
        delete(MagicLink).where(MagicLink.user_id == user_id, MagicLink.used_at.is_(None)),
    )

    async def count(model: Any) -> int:
        found = await session.scalars(select(model).where(model.user_id == user_id))
        return len(found.all())

    evidence = "evidence that contact respected attempt limits and calling hours (Ofcom, CONC/CMCOB)"
    for what, model, why in (
        ("contact_attempts", ContactAttempt, evidence),
        ("call_sessions", CallSession, evidence),
        ("compliance_decisions", ComplianceDecision, evidence),
        ("opt_outs", OptOut, "suppression must outlive the data, or the customer would be contacted again (PECR)"),
        ("do_not_call", DoNotCall, "suppression must outlive the data, or the customer would be contacted again"),
    ):
        if n := await count(model):
            report.kept.append({"what": what, "count": n, "why": why})

    report.erased["twilio_message_bodies"] = at_twilio.message_bodies
    report.erased["call_recordings"] = at_twilio.recordings_deleted
    if kept := at_twilio.recordings_kept:
        dates = [k.erasable_from for k in kept]
        report.kept.append(
            {
                "what": "call_recordings",
                "count": len(kept),
                "recordings": [asdict(k) for k in kept],
                "why": RECORDINGS_WHY,
                # all of them may go from the latest date; none has a date while a claim is open
                "erasable_from": None if None in dates else max(d for d in dates if d is not None),
            }
        )

    await record_ctx(
        ctx,
        session=session,
        action="customer.erased",
        subject_type="customer",
        subject_id=user_id,
        details=report.as_dict(),
    )
    await session.commit()
    await forget(redis, redis_prefix, [user_id])  # the cached context (notes, texts) goes too
    return report
