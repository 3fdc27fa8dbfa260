from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class CarrierAttempt(Base):
    """One call or text we asked (or were about to ask) the carrier for, written and committed before
    the request. Holds no number and no text: only when we asked, a digest of what a text said, and
    the carrier's sid once known, so that a retry on any worker can find what the carrier did."""

    __tablename__ = "carrier_attempts"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)  # dial:<session id>, sms:<message id>
    channel: Mapped[str] = mapped_column(String(8))  # voice | sms
    started_at: Mapped[datetime]  # PostgreSQL's clock, just before the latest request
    requests: Mapped[int] = mapped_column(default=1)  # how many times a request was begun
    body_digest: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the text as sent
    sid: Mapped[str | None] = mapped_column(String(64))
    settled_at: Mapped[datetime | None]
