from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base


class DoNotCall(Base):
    """A number that must never be called: TPS, customer request, complaint, wrong number..."""

    __tablename__ = "do_not_call"

    phone_e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(16))  # tps | customer | agent | complaint
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
