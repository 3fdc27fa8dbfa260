from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dialler.calls.models import CallSession, ContactAttempt
from dialler.comms.models import MagicLink, SmsMessage
from dialler.compliance.models import ComplianceDecision
from dialler.db.base import Base


class ConversionEvent(Base):
    """A customer's conversion seen through CDC: a signature arrived (``users.current_signature_file_id``
    went from NULL to set) or a document requirement left PENDING. Written by the CDC apply step, since
    the replica keeps only the current row and nothing else says *when* it happened. One row per
    change (``source_key``), so a redelivered change record adds nothing."""

    __tablename__ = "conversion_events"
    __table_args__ = (
        UniqueConstraint("source_key", name="uq_conversion_events_source_key"),
        Index("ix_conversion_events_user_at", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))  # signature | document
    source_key: Mapped[str] = mapped_column(String(100))  # table:row id:binlog version
    occurred_at: Mapped[datetime]  # the source commit time


class QueueDepthSample(Base):
    """A queue's depth, sampled every minute by the QueueDepthSample schedule (for "depth over the day")."""

    __tablename__ = "queue_depth_samples"
    __table_args__ = (UniqueConstraint("sampled_at", "queue", name="uq_queue_depth_samples_sampled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sampled_at: Mapped[datetime]  # truncated to the minute: a retried sample replaces nothing
    queue: Mapped[str] = mapped_column(String(32))
    depth: Mapped[int]


# Indexes the reports' time-range scans need on other modules' tables, declared here (with the reports
# that use them) and created by migration 0006 (0006_reports.py).
REPORT_INDEXES = (
    Index("ix_call_sessions_started_at", CallSession.started_at),
    Index("ix_contact_attempts_attempted_at", ContactAttempt.attempted_at),
    Index("ix_compliance_decisions_decided_at", ComplianceDecision.decided_at),
    Index("ix_sms_messages_created_at", SmsMessage.created_at),
    Index("ix_magic_links_created_at", MagicLink.created_at),
)


class ReportCount(Base):
    """A rolled-up count (dialler/reports/rollups.py): per queue and UTC hour, or per agent and UK day."""

    __tablename__ = "report_counts"
    __table_args__ = (Index("ix_report_counts_bucket", "bucket"),)

    grain: Mapped[str] = mapped_column(String(8), primary_key=True)  # queue | agent
    key: Mapped[str] = mapped_column(String(32), primary_key=True)  # queue name | agent id
    bucket: Mapped[datetime] = mapped_column(primary_key=True)  # start of the hour | of the UK day
    measure: Mapped[str] = mapped_column(String(100), primary_key=True)
    n: Mapped[int]


class ReportRolledDay(Base):
    """A UK day whose counts are in ``report_counts`` (reports read the raw rows for any other day)."""

    __tablename__ = "report_rolled_days"

    day: Mapped[date] = mapped_column(primary_key=True)
    rolled_at: Mapped[datetime]
