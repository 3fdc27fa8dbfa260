from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base, Timestamped


class CallSession(Timestamped, Base):
    """One call attempt, mirrored from its CallSessionWorkflow (``workflow_id``)."""

    __tablename__ = "call_sessions"
    __table_args__ = (
        # At most one open session per customer, whatever the workflow engine says.
        Index("uq_call_sessions_open_user", "user_id", unique=True, postgresql_where=text("closed_at IS NULL")),
        Index("ix_call_sessions_user_started", "user_id", "started_at"),
        Index("ix_call_sessions_agent_started", "agent_id", "started_at"),
        # The abandoned rate per queue over a rolling 24 h (dialler.pacing), read before progressive calls.
        Index("ix_call_sessions_queue_started", "queue", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(100), index=True)  # call-<user id>: one per customer, reused
    user_id: Mapped[int]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    queue: Mapped[str] = mapped_column(String(32))
    phone_e164: Mapped[str] = mapped_column(String(16))
    lease_token: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))
    twilio_call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    progressive: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    closed_at: Mapped[datetime | None]


class CallOutcome(Base):
    """The disposition an agent recorded for a session (or ``no_outcome`` on wrap-up timeout)."""

    __tablename__ = "call_outcomes"
    __table_args__ = (Index("ix_call_outcomes_recorded", "recorded_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("call_sessions.id"), unique=True)
    user_id: Mapped[int] = mapped_column(index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    disposition: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    callback_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime]


class ContactAttempt(Base):
    """Every attempt to reach a customer by phone, the input of the attempt-count and gap gates."""

    __tablename__ = "contact_attempts"
    __table_args__ = (
        Index("ix_contact_attempts_user_at", "user_id", "attempted_at"),
        Index("ix_contact_attempts_phone_at", "phone_e164", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    phone_e164: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8), default="voice")
    # Idempotency key: one attempt per session, however often the activity is retried.
    call_session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_sessions.id"), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    result: Mapped[str] = mapped_column(String(32))
    abandoned: Mapped[bool] = mapped_column(default=False)
    attempted_at: Mapped[datetime]


class CustomerNote(Base):
    __tablename__ = "customer_notes"
    __table_args__ = (Index("ix_customer_notes_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class ReceivedOutcome(Base):
    """An outcome the API accepted for a session, kept from the moment the agent was answered until
    the session applies it: an outcome answered 2xx survives a worker that is away (the session takes
    it from here when it resumes, or at the end of wrap-up, instead of closing as ``no_outcome``).
    ``claimed_at`` is set when the session takes it (by the Update or from here); from then on the
    API cannot withdraw it. Its notes are blanked when the session applies it (they are then in
    ``call_outcomes``, under retention and erasure): only an outcome still waiting holds them."""

    __tablename__ = "received_outcomes"

    # No foreign key to call_sessions: an outcome can be kept before the session's worker has written
    # its row (the agent skips a customer while the worker is down from the start).
    call_session_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    disposition: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    callback_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
