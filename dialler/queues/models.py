from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class QueueRebuild(Base):
    """One run of QueueRebuildWorkflow: counts per queue and the drift against the live queues."""

    __tablename__ = "queue_rebuilds"

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(150), unique=True)
    trigger: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    drift: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class QueueSetting(Base):
    """A queue's settings, one row per queue once someone sets one (no row: every default applies).

    Settings here may only make a rule stricter: the abandoned-call ceiling is checked against Ofcom's
    3 % by ``dialler.pacing.abandon_rate.validate_ceiling`` and again by the database."""

    __tablename__ = "queue_settings"
    __table_args__ = (
        CheckConstraint(
            "abandon_rate_ceiling IS NULL OR (abandon_rate_ceiling >= 0 AND abandon_rate_ceiling <= 0.03)",
            name="abandon_rate_ceiling_within_ofcom",
        ),
        CheckConstraint(
            "pacing_mode IS NULL OR pacing_mode IN ('preview', 'progressive', 'predictive')", name="pacing_mode_known"
        ),
        CheckConstraint("max_ratio IS NULL OR (max_ratio >= 1 AND max_ratio <= 5)", name="max_ratio_range"),
    )

    queue: Mapped[str] = mapped_column(String(32), primary_key=True)
    abandon_rate_ceiling: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    # The queue's pacing (dialler.pacing.predictive.PacingMode; no row or null: preview) and the most
    # calls ringing per expected free agent in predictive mode (null: the default, 3).
    pacing_mode: Mapped[str | None] = mapped_column(String(16))
    max_ratio: Mapped[Decimal | None] = mapped_column(Numeric(4, 2))
    updated_at: Mapped[datetime]
    updated_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
