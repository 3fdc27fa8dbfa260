"""Agent services: sign-in, tokens, and account administration.

Keyword-only, session first; each public function is one unit of work and commits (refusals that
must leave a trace, such as a failed login, commit their audit row before raising). Passwords are
hashed off the event loop (Argon2 is deliberately slow) and never logged or returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents import ratelimit, tokens
from dialler.agents.errors import (
    AgentNotFound,
    EmailAlreadyUsed,
    InvalidCredentials,
    InvalidPresenceReason,
    InvalidToken,
    LoginRateLimited,
    PresenceTransitionRefused,
    RefreshTokenReused,
    SelfLockout,
    WeakPassword,
)
from dialler.agents.models import Agent, RefreshToken, Role
from dialler.agents.passwords import hash_password, verify_password
from dialler.agents.permissions import permissions_of
from dialler.agents.presence import Initiator, PresenceState, get_presence, set_presence
from dialler.agents.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, AgentCreate, AgentUpdate
from dialler.agents.tokens import TokenPair
from dialler.audit.service import AuditAction, AuditContext, email_digest, mask_email, record_ctx
from dialler.config import Settings

log = logging.getLogger("dialler.agents")


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_policy(password: str, *, email: str | None = None) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"A password has at most {MAX_PASSWORD_LENGTH} characters.")
    if not password.strip():
        raise WeakPassword("A password cannot be only spaces.")
    if email and password.strip().lower() == normalise_email(email):
        raise WeakPassword("A password cannot be the email address.")


# Lookups ----------------------------------------------------------------------------------------


async def get(*, session: AsyncSession, agent_id: int) -> Agent | None:
    return await session.get(Agent, agent_id)


async def get_or_raise(*, session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise AgentNotFound(agent_id)
    return agent


async def get_by_email(*, session: AsyncSession, email: str) -> Agent | None:
    return await session.scalar(select(Agent).where(func.lower(Agent.email) == normalise_email(email)))


async def list_agents(
    *,
    session: AsyncSession,
    limit: int,
    offset: int,
    role: Role | None = None,
    active: bool | None = None,
) -> tuple[list[Agent], int]:
    query = select(Agent)
    if role is not None:
        query = query.where(Agent.role == role.value)
    if active is not None:
        query = query.where(Agent.active.is_(active))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(Agent.display_name, Agent.id).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)


# Sign-in ----------------------------------------------------------------------------------------


async def _check_credentials(*, session: AsyncSession, email: str, password: str) -> tuple[Agent | None, str | None]:
    """The agent (if any) and why the sign-in fails (None when it succeeds).

    An unknown email still costs one Argon2 verification (against a dummy hash), so the answer and
    its timing are the same whether or not the account exists."""
    agent = await get_by_email(session=session, email=email)
    ok = await asyncio.to_thread(verify_password, agent.password_hash if agent else None, password)
    if agent is None:
        return None, "unknown_email"
    if not ok:
        return agent, "bad_password"
    if not agent.active:
        return agent, "disabled"
    return agent, None


async def authenticate(*, session: AsyncSession, email: str, password: str) -> Agent:
    """The active agent with this email and password, else :class:`InvalidCredentials`."""
    agent, failure = await _check_credentials(session=session, email=email, password=password)
    if agent is None or failure is not None:
        raise InvalidCredentials()
    return agent


@dataclass(frozen=True)
class SignedIn:
    agent: Agent
    tokens: TokenPair


async def login(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    email: str,
    password: str,
    ctx: AuditContext,
    now: datetime,
) -> SignedIn:
    email = normalise_email(email)
    who = {"email_masked": mask_email(email), "email_digest": email_digest(email)}
    admission = await ratelimit.admit_login(redis=redis, settings=settings, email=email, client_ip=ctx.client_ip)
    if not admission.allowed:
        await record_ctx(ctx, session=session, action=AuditAction.LOGIN_RATE_LIMITED, details=who)
        await session.commit()
        log.warning("login rate-limited %s request_id=%s", who["email_masked"], ctx.request_id)
        raise LoginRateLimited(admission.retry_after_s)

    try:
        agent, reason = await _check_credentials(session=session, email=email, password=password)
    except Exception:
        with contextlib.suppress(Exception):  # best effort: the original error is the one to report
            await ratelimit.give_back_login(redis=redis, settings=settings, email=email, client_ip=ctx.client_ip)
        raise
    if agent is None or reason is not None:
        await record_ctx(
            ctx,
            session=session,
            action=AuditAction.LOGIN_FAILED,
            subject_type="agent" if agent else None,
            subject_id=agent.id if agent else None,
            details={**who, "reason": reason},
        )
        await session.commit()
        log.info("login failed %s reason=%s request_id=%s", who["email_masked"], reason, ctx.request_id)
        raise InvalidCredentials()

    pair = await tokens.issue_token_pair(
        session=session, settings=settings, agent_id=agent.id, role=agent.role, now=now
    )
    await record_ctx(
        ctx.as_actor(agent.id),
        session=session,
        action=AuditAction.LOGIN,
        subject_type="agent",
        subject_id=agent.id,
        details={"family_id": pair.family_id},
    )
    await session.commit()
    await ratelimit.forgive_login(redis=redis, settings=settings, email=email, client_ip=ctx.client_ip)
    log.info("login agent_id=%s request_id=%s", agent.id, ctx.request_id)
    return SignedIn(agent, pair)


async def refresh(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    refresh_token: str,
    ctx: AuditContext,
    now: datetime,
) -> SignedIn:
    """Rotates a refresh token. A token that was already rotated revokes its whole family."""
    row = await tokens.find_refresh_token_for_update(session=session, token=refresh_token)
    if row is None or row.revoked_at is not None:
        await session.rollback()
        raise InvalidToken()
    if row.used_at is not None:
        await tokens.revoke_family(session=session, redis=redis, settings=settings, family_id=row.family_id, now=now)
        await record_ctx(
            ctx.as_actor(row.agent_id),
            session=session,
            action=AuditAction.REFRESH_REUSED,
            subject_type="agent",
            subject_id=row.agent_id,
            details={"family_id": row.family_id, "first_used_at": row.used_at.isoformat()},
        )
        await session.commit()
        log.warning("refresh token reused: family revoked agent_id=%s request_id=%s", row.agent_id, ctx.request_id)
        raise RefreshTokenReused()
    if row.expires_at <= now:
        await session.rollback()
        raise InvalidToken()
    agent = await session.get(Agent, row.agent_id)
    if agent is None or not agent.active:
        await tokens.revoke_family(session=session, redis=redis, settings=settings, family_id=row.family_id, now=now)
        await session.commit()
        raise InvalidToken()
    row.used_at = now
    pair = await tokens.issue_token_pair(
        session=session,
        settings=settings,
        agent_id=agent.id,
        role=agent.role,
        now=now,
        family_id=row.family_id,
        refresh_expires_at=row.expires_at,
    )
    await session.commit()
    return SignedIn(agent, pair)


async def logout(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    refresh_token: str,
    ctx: AuditContext,
    now: datetime,
) -> None:
    """Ends the sign-in the refresh token belongs to. Unknown or already-ended tokens are a silent no-op.

    The agent goes offline if this was their last sign-in and they are not in a call."""
    row = await tokens.find_refresh_token_for_update(session=session, token=refresh_token)
    if row is None or row.revoked_at is not None:
        await session.rollback()
        return
    agent_id, family_id = row.agent_id, row.family_id
    await tokens.revoke_family(session=session, redis=redis, settings=settings, family_id=family_id, now=now)
    await record_ctx(
        ctx.as_actor(agent_id),
        session=session,
        action=AuditAction.LOGOUT,
        subject_type="agent",
        subject_id=agent_id,
        details={"family_id": family_id},
    )
    await session.commit()
    still_signed_in = await session.scalar(
        select(
            exists().where(
                RefreshToken.agent_id == agent_id,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.used_at.is_(None),
                RefreshToken.expires_at > now,
            )
        )
    )
    if not still_signed_in:
        await _go_offline_if_idle(session=session, redis=redis, settings=settings, agent_id=agent_id, now=now)


async def _go_offline_if_idle(
    *, session: AsyncSession, redis: Redis, settings: Settings, agent_id: int, now: datetime
) -> None:
    current = await get_presence(session=session, redis=redis, settings=settings, agent_id=agent_id)
    if current.state not in (PresenceState.AVAILABLE, PresenceState.BREAK):
        return  # offline already, or a call session owns the agent and will finish with them
    # A call may start between the read and the change; then the call session owns the agent.
    with contextlib.suppress(PresenceTransitionRefused, InvalidPresenceReason):
        await set_presence(
            session=session,
            redis=redis,
            settings=settings,
            agent_id=agent_id,
            target=PresenceState.OFFLINE,
            now=now,
            by=Initiator.SYSTEM,
        )


# Administration ---------------------------------------------------------------------------------


async def create_agent(*, session: AsyncSession, data: AgentCreate, ctx: AuditContext) -> Agent:
    password = data.password.get_secret_value()
    check_password_policy(password, email=data.email)
    email = normalise_email(data.email)
    if await get_by_email(session=session, email=email) is not None:
        raise EmailAlreadyUsed()
    agent = Agent(
        email=email,
        display_name=data.display_name.strip() or email,
        password_hash=await asyncio.to_thread(hash_password, password),
        role=data.role.value,
        queues=list(data.queues),
        trained_vulnerable=data.trained_vulnerable,
        progressive_mode=data.progressive_mode,
        active=True,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same email
        await session.rollback()
        raise EmailAlreadyUsed() from exc
    await record_ctx(
        ctx,
        session=session,
        action=AuditAction.AGENT_CREATED,
        subject_type="agent",
        subject_id=agent.id,
        details={
            "role": agent.role,
            "queues": agent.queues,
            "trained_vulnerable": agent.trained_vulnerable,
            "progressive_mode": agent.progressive_mode,
        },
    )
    await session.commit()
    await session.refresh(agent)
    log.info("agent created agent_id=%s by=%s request_id=%s", agent.id, ctx.actor_agent_id, ctx.request_id)
    return agent


async def update_agent(*, session: AsyncSession, agent_id: int, data: AgentUpdate, ctx: AuditContext) -> Agent:
    agent = await get_or_raise(session=session, agent_id=agent_id)
    wanted: dict[str, Any] = data.model_dump(exclude_none=True)
    if "email" in wanted:
        wanted["email"] = normalise_email(wanted["email"])
        other = await get_by_email(session=session, email=wanted["email"])
        if other is not None and other.id != agent.id:
            raise EmailAlreadyUsed()
    if "role" in wanted:
        wanted["role"] = Role(wanted["role"]).value
        if agent.id == ctx.actor_agent_id and wanted["role"] != agent.role:
            raise SelfLockout("You cannot change your own role; ask another admin.")
    if "display_name" in wanted:
        wanted["display_name"] = wanted["display_name"].strip() or agent.display_name
    changes = {
        field: {"from": getattr(agent, field), "to": value}
        for field, value in wanted.items()
        if getattr(agent, field) != value
    }
    if not changes:
        return agent
    old_role = agent.role
    for field, change in changes.items():
        setattr(agent, field, change["to"])
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise EmailAlreadyUsed() from exc
    await record_ctx(
        ctx,
        session=session,
        action=AuditAction.AGENT_UPDATED,
        subject_type="agent",
        subject_id=agent.id,
        details={"changes": changes},
    )
    if "role" in changes:
        before, after = permissions_of(old_role), permissions_of(agent.role)
        await record_ctx(
            ctx,
            session=session,
            action=AuditAction.AGENT_ROLE_CHANGED,
            subject_type="agent",
            subject_id=agent.id,
            details={
                "from": old_role,
                "to": agent.role,
                "granted": sorted(after - before),
                "revoked": sorted(before - after),
            },
        )
    await session.commit()
    await session.refresh(agent)
    log.info("agent updated agent_id=%s fields=%s request_id=%s", agent.id, sorted(changes), ctx.request_id)
    return agent


async def disable_agent(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    agent_id: int,
    ctx: AuditContext,
    now: datetime,
) -> Agent:
    """Blocks sign-in, ends every sign-in at once, and takes the agent offline unless in a call."""
    agent = await get_or_raise(session=session, agent_id=agent_id)
    if agent.id == ctx.actor_agent_id:
        raise SelfLockout("You cannot disable your own account; ask another admin.")
    if agent.active:
        agent.active = False
        await tokens.revoke_agent_tokens(session=session, redis=redis, settings=settings, agent_id=agent.id, now=now)
        await record_ctx(
            ctx, session=session, action=AuditAction.AGENT_DISABLED, subject_type="agent", subject_id=agent.id
        )
        await session.commit()
        log.info("agent disabled agent_id=%s by=%s request_id=%s", agent.id, ctx.actor_agent_id, ctx.request_id)
        await _go_offline_if_idle(session=session, redis=redis, settings=settings, agent_id=agent.id, now=now)
    await session.refresh(agent)
    return agent


async def enable_agent(*, session: AsyncSession, agent_id: int, ctx: AuditContext) -> Agent:
    agent = await get_or_raise(session=session, agent_id=agent_id)
    if not agent.active:
        agent.active = True
        await record_ctx(
            ctx, session=session, action=AuditAction.AGENT_ENABLED, subject_type="agent", subject_id=agent.id
        )
        await session.commit()
        await session.refresh(agent)
    return agent


async def reset_password(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    agent_id: int,
    new_password: str,
    ctx: AuditContext,
    now: datetime,
) -> None:
    """Sets a new password and ends every sign-in of the agent (including the caller's own, if it is them)."""
    agent = await get_or_raise(session=session, agent_id=agent_id)
    check_password_policy(new_password, email=agent.email)
    agent.password_hash = await asyncio.to_thread(hash_password, new_password)
    await tokens.revoke_agent_tokens(session=session, redis=redis, settings=settings, agent_id=agent.id, now=now)
    await record_ctx(
        ctx,
        session=session,
        action=AuditAction.AGENT_PASSWORD_RESET,
        subject_type="agent",
        subject_id=agent.id,
    )
    await session.commit()
    log.info("password reset agent_id=%s by=%s request_id=%s", agent.id, ctx.actor_agent_id, ctx.request_id)
