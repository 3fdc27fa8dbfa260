from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base, Timestamped


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class Agent(Timestamped, Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("role IN ('agent', 'supervisor', 'compliance', 'admin')", name="role"),
        Index("uq_agents_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), default=Role.AGENT)
    queues: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list)
    trained_vulnerable: Mapped[bool] = mapped_column(default=False)
    progressive_mode: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)


class RefreshToken(Base):
    """One issued refresh token. Rotation marks it used; reuse of a used token revokes its family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PresenceEvent(Base):
    """Agent presence history, one row per state stint, appended (for time-in-state reports): a stint
    ends where the agent's next one starts (``presence.presence_history``)."""

    __tablename__ = "agent_presence_events"
    __table_args__ = (Index("ix_presence_agent_started", "agent_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
