"""Access and refresh tokens.

Access tokens are HS256 JWTs that live at most 15 minutes (``settings.access_token_ttl_s``). Decoding
pins the algorithm, issuer, audience and token type and requires every claim, so a token signed with
``none`` or another algorithm, or minted for another audience, is refused.

Refresh tokens are opaque random strings. The database stores only their SHA-256 (as ``jti``), so a
leaked table cannot be replayed. Tokens of one sign-in form a *family*; each refresh marks the
presented token used and issues its successor in the same family, with the family's original expiry
(a sign-in lasts one ``refresh_token_ttl_s`` at most, however often it is refreshed). Presenting a used
token again means two parties hold the family: the caller revokes it (``service.refresh``).

Revoking a family also marks it in Redis for one access-token lifetime, so that access tokens of that
family stop working at once instead of at their expiry (``CurrentAgent`` checks the mark).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.errors import InvalidToken
from dialler.agents.models import RefreshToken
from dialler.config import Settings

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub", "jti", "role", "typ", "sid"]
_REFRESH_PREFIX = "rt_"


@dataclass(frozen=True)
class AccessClaims:
    agent_id: int
    role: str
    jti: str
    family_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    family_id: str


def encode_access_token(
    *, settings: Settings, agent_id: int, role: str, family_id: str, now: datetime
) -> tuple[str, datetime]:
    expires_at = now + timedelta(seconds=settings.access_token_ttl_s)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "sub": str(agent_id),
        "role": role,
        "jti": uuid.uuid4().hex,
        "sid": family_id,
        "typ": ACCESS_TYPE,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM), expires_at


def decode_access_token(*, settings: Settings, token: str) -> AccessClaims:
    """The verified claims, or :class:`InvalidToken` whatever went wrong (the reason is not disclosed)."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": _REQUIRED_CLAIMS, "verify_exp": True, "verify_iat": True},
        )
        if claims["typ"] != ACCESS_TYPE:
            raise InvalidToken()
        return AccessClaims(
            agent_id=int(claims["sub"]),
            role=str(claims["role"]),
            jti=str(claims["jti"]),
            family_id=str(claims["sid"]),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken() from exc


def refresh_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_refresh_token() -> str:
    return _REFRESH_PREFIX + secrets.token_urlsafe(32)


async def issue_refresh_token(
    *,
    session: AsyncSession,
    agent_id: int,
    now: datetime,
    expires_at: datetime,
    family_id: str,
) -> str:
    """Stores the digest of a new refresh token (not committed) and returns the token."""
    token = _new_refresh_token()
    session.add(
        RefreshToken(
            jti=refresh_digest(token),
            family_id=family_id,
            agent_id=agent_id,
            issued_at=now,
            expires_at=expires_at,
        )
    )
    return token


async def issue_token_pair(
    *,
    session: AsyncSession,
    settings: Settings,
    agent_id: int,
    role: str,
    now: datetime,
    family_id: str | None = None,
    refresh_expires_at: datetime | None = None,
) -> TokenPair:
    """A new sign-in (no ``family_id``) or the successor in a family. Not committed."""
    family_id = family_id or uuid.uuid4().hex
    refresh_expires_at = refresh_expires_at or now + timedelta(seconds=settings.refresh_token_ttl_s)
    refresh = await issue_refresh_token(
        session=session, agent_id=agent_id, now=now, expires_at=refresh_expires_at, family_id=family_id
    )
    access, access_expires_at = encode_access_token(
        settings=settings, agent_id=agent_id, role=role, family_id=family_id, now=now
    )
    return TokenPair(access, access_expires_at, refresh, refresh_expires_at, family_id)


async def find_refresh_token_for_update(*, session: AsyncSession, token: str) -> RefreshToken | None:
    """The stored token, row-locked so that two concurrent refreshes of it serialise."""
    if not token.startswith(_REFRESH_PREFIX) or len(token) > 128:
        return None
    query = select(RefreshToken).where(RefreshToken.jti == refresh_digest(token)).with_for_update()
    return await session.scalar(query)


def _revoked_key(settings: Settings, family_id: str) -> str:
    return f"{settings.redis_prefix}:auth:revoked_family:{family_id}"


async def _mark_revoked(*, redis: Redis, settings: Settings, family_ids: set[str]) -> None:
    if not family_ids:
        return
    # An access token outlives its family's revocation by at most its TTL; the mark covers that span.
    ttl = settings.access_token_ttl_s + 60
    async with redis.pipeline(transaction=False) as pipe:
        for family_id in family_ids:
            pipe.set(_revoked_key(settings, family_id), "1", ex=ttl)
        await pipe.execute()


async def revoke_family(
    *, session: AsyncSession, redis: Redis, settings: Settings, family_id: str, now: datetime
) -> None:
    """Revokes every token of a family (not committed; the Redis mark is immediate)."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await _mark_revoked(redis=redis, settings=settings, family_ids={family_id})


async def revoke_agent_tokens(
    *, session: AsyncSession, redis: Redis, settings: Settings, agent_id: int, now: datetime
) -> None:
    """Ends every sign-in of an agent (disable, password reset). Not committed."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.agent_id == agent_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RefreshToken.family_id)
    )
    await _mark_revoked(redis=redis, settings=settings, family_ids=set(result.scalars().all()))


async def is_family_revoked(*, redis: Redis, settings: Settings, family_id: str) -> bool:
    return bool(await redis.exists(_revoked_key(settings, family_id)))
