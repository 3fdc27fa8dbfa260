from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class BinlogCheckpoint(Base):
    """Where the binlog publisher resumes: written only after SQS accepted the batch."""

    __tablename__ = "binlog_checkpoints"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    log_file: Mapped[str] = mapped_column(String(255))
    log_pos: Mapped[int]
    # The server the position belongs to (ReplicaStatus.server): a position means nothing on another
    # server (a re-provisioned replica, a fail-over, a fresh local MariaDB). NULL: written before it was kept.
    source_server: Mapped[str | None] = mapped_column(String(128))
    # A full queue rebuild asked for (why) and not yet started: kept here, beside the reset that
    # needs it, so that a crash between the two cannot lose the request.
    rebuild_requested: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime]
