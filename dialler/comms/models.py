from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dialler.db.base import Base, Timestamped


class SmsConversation(Timestamped, Base):
    """One thread per customer, matched on the E.164 number."""

    __tablename__ = "sms_conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(unique=True)
    phone_e164: Mapped[str] = mapped_column(String(16), unique=True)
    unread_count: Mapped[int] = mapped_column(default=0)
    last_message_at: Mapped[datetime | None]


class SmsMessage(Base):
    __tablename__ = "sms_messages"
    __table_args__ = (Index("ix_sms_messages_conversation_created", "conversation_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("sms_conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(32))
    twilio_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Outbound: derived from the workflow and step, so that a retried send is one message.
    idempotency_key: Mapped[str | None] = mapped_column(String(150), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime]
    status_updated_at: Mapped[datetime | None]


class MagicLink(Base):
    """A single-purpose, expiring, one-time portal link. Only the token's hash is stored."""

    __tablename__ = "magic_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # sign | upload
    claim_id: Mapped[int | None]
    requirement_id: Mapped[int | None]
    workflow_id: Mapped[str | None] = mapped_column(String(100))
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
