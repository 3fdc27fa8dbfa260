"""Writing and reading the audit log.

``record`` adds a row to the caller's session and does not commit: the audit row and the change it
describes land in the same transaction, or neither does. Callers that audit a refusal (a failed login,
a reused refresh token) commit before raising.

Never put a password, a token or a full phone number in ``details``; use :func:`mask_email` /
:func:`email_digest` for emails of failed logins.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.audit.models import AuditEntry


class AuditAction(StrEnum):
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGIN_RATE_LIMITED = "auth.login_rate_limited"
    LOGOUT = "auth.logout"
    REFRESH_REUSED = "auth.refresh_reused"
    ACCESS_DENIED = "auth.access_denied"
    AGENT_CREATED = "agent.created"
    AGENT_UPDATED = "agent.updated"
    AGENT_ROLE_CHANGED = "agent.role_changed"
    AGENT_DISABLED = "agent.disabled"
    AGENT_ENABLED = "agent.enabled"
    AGENT_PASSWORD_RESET = "agent.password_reset"
    PRESENCE_CHANGED = "presence.changed"
    CUSTOMER_CONTEXT_READ = "customer.context_read"
    CUSTOMER_ACCESS_DENIED = "customer.access_denied"
    PAYLOADS_DECODED = "temporal.payloads_decoded"


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where; built once per request by the API and handed to services."""

    actor_agent_id: int | None = None
    client_ip: str | None = None
    request_id: str | None = None

    def as_actor(self, agent_id: int) -> AuditContext:
        return AuditContext(agent_id, self.client_ip, self.request_id)


def clean_ip(value: str | None) -> str | None:
    """The address if it is an IP (the column is INET); test clients and proxies send names too."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def email_digest(email: str) -> str:
    """A stable, non-reversible key for an email: correlates failed logins without storing the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def mask_email(email: str) -> str:
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


async def record(
    *,
    session: AsyncSession,
    action: AuditAction | str,
    actor_agent_id: int | None,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    client_ip: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        action=str(action),
        actor_agent_id=actor_agent_id,
        subject_type=subject_type,
        subject_id=None if subject_id is None else str(subject_id),
        client_ip=clean_ip(client_ip),
        request_id=request_id,
        details=details or {},
    )
    if at is not None:
        entry.at = at
    session.add(entry)
    return entry


async def record_ctx(
    ctx: AuditContext,
    *,
    session: AsyncSession,
    action: AuditAction | str,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """:func:`record` with the actor, address and request id taken from ``ctx``."""
    return await record(
        session=session,
        action=action,
        actor_agent_id=ctx.actor_agent_id,
        subject_type=subject_type,
        subject_id=subject_id,
        client_ip=ctx.client_ip,
        request_id=ctx.request_id,
        details=details,
    )


async def list_entries(
    *,
    session: AsyncSession,
    limit: int,
    before_id: int | None = None,
    actor_agent_id: int | None = None,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
) -> list[AuditEntry]:
    """Newest first, keyset-paged by id (an OFFSET over a large log gets slower with every page)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if actor_agent_id is not None:
        query = query.where(AuditEntry.actor_agent_id == actor_agent_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if subject_type is not None:
        query = query.where(AuditEntry.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(AuditEntry.subject_id == subject_id)
    return list((await session.scalars(query)).all())
