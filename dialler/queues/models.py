from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
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
