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
    updated_at: Mapped[datetime]
