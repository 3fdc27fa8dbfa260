from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class CallRecording(Base):
    """One recording Twilio made of a call, from its recording status callback. The media stay at
    Twilio (played through the API with the account's credentials, never by a public URL) until the
    retention purge deletes them there and sets ``deleted_at``; the row stays as the record."""

    __tablename__ = "call_recordings"
    __table_args__ = (
        Index("ix_call_recordings_user_created", "user_id", "created_at"),
        Index("ix_call_recordings_session", "call_session_id"),
    )

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)  # Twilio's RE…
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    call_session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    user_id: Mapped[int | None]
    claim_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    duration_s: Mapped[int | None]
    channels: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))  # Twilio's: in-progress | completed | absent | failed
    source: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
