from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base, Timestamped

LIVE_STATUSES = ("scheduled", "due", "open")


class Callback(Timestamped, Base):
    """PostgreSQL mirror of a CallbackWorkflow, for reports and the queue rebuild."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint("status IN ('scheduled', 'due', 'open', 'completed', 'missed', 'cancelled')", name="status"),
        # One live callback per customer: the same rule as the workflow id callback-<user id>.
        Index(
            "uq_callbacks_live_user",
            "user_id",
            unique=True,
            postgresql_where=text("status IN ('scheduled', 'due', 'open')"),
        ),
        Index("ix_callbacks_status_due", "status", "due_at"),
        Index("ix_callbacks_owner_due", "owner_agent_id", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(100))
    workflow_run_key: Mapped[str] = mapped_column(String(100), unique=True)
    user_id: Mapped[int]
    booked_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    source: Mapped[str] = mapped_column(String(16), default="agent")
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    rebooked_from_id: Mapped[int | None] = mapped_column(ForeignKey("callbacks.id"))
