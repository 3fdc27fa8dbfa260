from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class DoNotCall(Base):
    """A number that must never be called: TPS, customer request, complaint, wrong number..."""

    __tablename__ = "do_not_call"

    phone_e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(16))  # tps | customer | agent | complaint | review
    reason: Mapped[str | None] = mapped_column(Text)
    added_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class OptOut(Base):
    """An SMS STOP. While it stands, the customer gets no text and no call."""

    __tablename__ = "opt_outs"

    phone_e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(index=True)
    keyword: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class ComplianceDecision(Base):
    """What the compliance gate answered before a contact: allowed or refused, every rule it checked,
    the reasons, and which facts it saw (row versions, counts), so that any attempt can be explained
    later. No phone number: the customer id and the session say whom it was about."""

    __tablename__ = "compliance_decisions"
    __table_args__ = (
        Index("ix_compliance_decisions_user_decided", "user_id", "decided_at"),
        # One decision per session and step: a retried activity replaces its own, never adds one.
        UniqueConstraint("call_session_id", "path", name="uq_compliance_decisions_session_path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    channel: Mapped[str] = mapped_column(String(8))  # voice | sms
    path: Mapped[str] = mapped_column(String(16))  # dial | callback | sms
    call_session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    agent_id: Mapped[int | None]
    allowed: Mapped[bool]
    blocking_rule: Mapped[str | None] = mapped_column(String(48))
    rules_checked: Mapped[list[str]] = mapped_column(JSONB)
    reasons: Mapped[list[str]] = mapped_column(JSONB)
    facts_versions: Mapped[dict[str, Any]] = mapped_column(JSONB)
    next_allowed_at: Mapped[datetime | None]
    decided_at: Mapped[datetime]
    basis: Mapped[str | None] = mapped_column(String(120))  # PECR 21A: dialler.compliance.basis


class ReviewItem(Base):
    """An outcome a person must look at (complaint, vulnerable customer, deceased): one per session,
    written by the session's finishing step, worked by the compliance desk (:mod:`dialler.compliance.reviews`).

    The notes stay on the call outcome (``call_outcome_id``): one copy of what the agent wrote."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_created", "status", "created_at"),
        Index("ix_review_items_user", "user_id"),
        # Idempotency key of the finishing step: one item per session and kind, however often it is retried.
        UniqueConstraint("call_session_id", "kind", name="uq_review_items_session_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))  # complaint | vulnerable | deceased
    user_id: Mapped[int]
    call_session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_sessions.id"))
    call_outcome_id: Mapped[int | None] = mapped_column(ForeignKey("call_outcomes.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))  # who recorded the outcome
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | in_progress | closed
    assignee_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime]
    # FCA DISP 1.6: a complaint is acknowledged promptly and has a final response within 8 weeks.
    acknowledge_due_at: Mapped[datetime | None]
    final_response_due_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))


class CustomerFlag(Base):
    """A flag the dialler holds on a customer whatever the replica says: today ``vulnerable``, set by
    an agent's ``vulnerable_flagged`` outcome or by the compliance desk, cleared only by the desk. While
    it stands (``cleared_at`` null) the compliance gate and the queues treat the customer as vulnerable."""

    __tablename__ = "customer_flags"

    user_id: Mapped[int] = mapped_column(primary_key=True)
    flag: Mapped[str] = mapped_column(String(24), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # agent | compliance
    set_at: Mapped[datetime]
    set_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    call_session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    cleared_at: Mapped[datetime | None]
    cleared_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
