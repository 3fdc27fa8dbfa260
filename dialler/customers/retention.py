"""Retention by rule: what the dialler keeps only for a while is erased once its period is over.

Run daily by the ``retention-purge`` Temporal Schedule (workers/registry.py → RetentionWorkflow →
``purge``); each run leaves an audit row with its counts. Periods come from settings
(``retention_sms_body_days``, ``retention_notes_days``). What is kept for the law (contact evidence,
suppression) is never purged here; recordings live at Twilio and follow CMCOB 2.3.6 (never before 12
months after the claim ends, see dialler.recordings.service).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.audit.service import record
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CustomerNote
from dialler.comms.models import SmsMessage
from dialler.customers.personal_data import ERASED


@dataclass(frozen=True)
class RetentionInput:
    """The schedule's argument: the periods in force when the schedule was last written."""

    sms_body_days: int
    notes_days: int
    trigger: str = "schedule"


@dataclass(frozen=True)
class PurgeInput:
    as_of: datetime  # the workflow's time: the same cut-offs on every retry
    sms_body_days: int
    notes_days: int


@dataclass(frozen=True)
class RetentionReport:
    as_of: datetime
    sms_bodies: int
    call_notes: int
    customer_notes: int
    callback_reasons: int


async def purge(session: AsyncSession, input: PurgeInput) -> RetentionReport:
    """Erase what is past its period, record the run; idempotent (a retry finds nothing more)."""
    as_of = input.as_of.astimezone(UTC).replace(tzinfo=None)  # columns hold naive UTC
    sms_cutoff = as_of - timedelta(days=input.sms_body_days)
    notes_cutoff = as_of - timedelta(days=input.notes_days)

    async def rows(statement: object) -> int:
        return (await session.execute(statement)).rowcount or 0  # type: ignore[call-overload, attr-defined]

    report = RetentionReport(
        as_of=input.as_of,
        sms_bodies=await rows(
            update(SmsMessage).where(SmsMessage.created_at < sms_cutoff, SmsMessage.body != ERASED).values(body=ERASED)
        ),
        call_notes=await rows(
            update(CallOutcome)
            .where(CallOutcome.recorded_at < notes_cutoff, CallOutcome.notes.is_not(None))
            .values(notes=None)
        ),
        customer_notes=await rows(delete(CustomerNote).where(CustomerNote.created_at < notes_cutoff)),
        callback_reasons=await rows(
            update(Callback).where(Callback.due_at < notes_cutoff, Callback.reason.is_not(None)).values(reason=None)
        ),
    )
    details = asdict(report) | {"as_of": input.as_of.isoformat()}
    details |= {"sms_body_days": input.sms_body_days, "notes_days": input.notes_days}
    await record(
        session=session, action="retention.purged", actor_agent_id=None, subject_type="retention", details=details
    )
    await session.commit()
    return report
