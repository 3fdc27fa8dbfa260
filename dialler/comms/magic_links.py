"""Magic links: single-purpose, expiring, one-time portal links, bound to a customer and a claim or
requirement.

* The token is ``secrets.token_urlsafe(32)`` (256 bits); only its SHA-256 is stored, so a copy of the
  database opens nothing. The token exists in clear only inside the activity that texts it, and in the
  text itself: ``sms_messages`` keeps the body with the token redacted, and no workflow payload holds it.
* The URL is ``<portal_base_url>/m/<token>``: short (a text stays within two segments) and the same
  shape for every purpose; the portal asks :func:`consume` (through the verify endpoint) what it opens.
* Consuming is one atomic ``UPDATE … WHERE used_at IS NULL AND expires_at > now RETURNING``: of two
  concurrent clicks exactly one wins.

Verify answers, and the HTTP status the API gives them (one per case, documented in the route):

============================  ==============================  ======
token                         error                           status
============================  ==============================  ======
valid, first use              — (who and what)                200
used before                   :class:`MagicLinkUsed`          409
expired (or never sent)       :class:`MagicLinkExpired`       410
unknown, malformed, tampered  :class:`MagicLinkNotFound`      404
============================  ==============================  ======
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler.comms.errors import (
    CustomerNotFound,
    InvalidMagicLinkTarget,
    MagicLinkExpired,
    MagicLinkNotFound,
    MagicLinkUsed,
)
from dialler.comms.messages import MagicLinkPurpose
from dialler.comms.models import MagicLink
from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES

__all__ = [
    "DEFAULT_TTL",
    "LinkTarget",
    "VerifiedLink",
    "consume",
    "issue",
    "link_url",
    "new_token",
    "redact",
    "settle",
    "token_hash",
    "validate_target",
]

DEFAULT_TTL: Final = timedelta(hours=72)
MAX_TTL: Final = timedelta(days=14)
TOKEN_BYTES: Final = 32
LINK_PATH: Final = "/m/"
REDACTED: Final = "[link]"
# token_urlsafe(32): 43 characters of the URL-safe base64 alphabet, no padding.
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(portal_base_url: str, token: str) -> str:
    return f"{portal_base_url.rstrip('/')}{LINK_PATH}{token}"


def redact(body: str, token: str) -> str:
    """The text as stored and shown to agents: the token replaced by ``[link]``."""
    return body.replace(token, REDACTED)


@dataclass(frozen=True)
class LinkTarget:
    claim_id: int | None
    requirement_id: int | None
    document_type: str | None  # the requirement's type, for the upload text


_USER = text(
    "SELECT id, current_signature_file_id IS NOT NULL AS signed FROM users WHERE id = :id AND deleted_at IS NULL"
)
_CLAIM = text("SELECT id, status FROM claims WHERE id = :claim AND user_id = :user AND deleted_at IS NULL")
_REQUIREMENT = text(
    "SELECT cr.id, cr.claim_id, cr.type, cr.status, c.status AS claim_status FROM claim_requirements cr"
    " JOIN claims c ON c.id = cr.claim_id"
    " WHERE cr.id = :req AND c.user_id = :user AND cr.deleted_at IS NULL AND c.deleted_at IS NULL"
)


async def validate_target(
    *, replica: AsyncEngine, user_id: int, purpose: str, claim_id: int | None, requirement_id: int | None
) -> LinkTarget:
    """What the link will open, checked against the replica: a signature the customer still owes, or
    a pending requirement of one of their active claims. :class:`InvalidMagicLinkTarget` otherwise."""
    try:
        kind = MagicLinkPurpose(purpose)
    except ValueError:
        raise InvalidMagicLinkTarget(f"Unknown purpose {purpose!r}: use sign or upload.") from None
    async with replica.connect() as conn:
        user = (await conn.execute(_USER, {"id": user_id})).one_or_none()
        if user is None:
            raise CustomerNotFound(f"No customer {user_id}.")
        claim = None
        if claim_id is not None:
            claim = (await conn.execute(_CLAIM, {"claim": claim_id, "user": user_id})).one_or_none()
            if claim is None:
                raise InvalidMagicLinkTarget(f"Claim {claim_id} is not this customer's.")
            if claim.status not in ACTIVE_CLAIM_STATUSES:
                raise InvalidMagicLinkTarget(f"Claim {claim_id} is {claim.status}: nothing to do on it.")
        if kind is MagicLinkPurpose.SIGN:
            if requirement_id is not None:
                raise InvalidMagicLinkTarget("A signing link is for a customer (and a claim), not a requirement.")
            if user.signed:
                raise InvalidMagicLinkTarget("The customer has already signed.")
            return LinkTarget(claim_id, None, None)
        if requirement_id is None:
            raise InvalidMagicLinkTarget("An upload link needs the requirement to upload for.")
        requirement = (await conn.execute(_REQUIREMENT, {"req": requirement_id, "user": user_id})).one_or_none()
    if requirement is None:
        raise InvalidMagicLinkTarget(f"Requirement {requirement_id} is not this customer's.")
    if claim_id is not None and requirement.claim_id != claim_id:
        raise InvalidMagicLinkTarget(f"Requirement {requirement_id} belongs to another claim.")
    if requirement.status != "PENDING" or requirement.claim_status not in ACTIVE_CLAIM_STATUSES:
        raise InvalidMagicLinkTarget(f"Requirement {requirement_id} is not pending: nothing to upload.")
    return LinkTarget(int(requirement.claim_id), requirement_id, str(requirement.type))


async def issue(
    *,
    session: AsyncSession,
    workflow_id: str,
    user_id: int,
    purpose: str,
    target: LinkTarget,
    agent_id: int | None,
    now: datetime,
    ttl: timedelta,
) -> tuple[MagicLink, str]:
    """The link of ``workflow_id`` with a fresh token (returned in clear, once).

    Issuing again for the same workflow (a retried activity whose text never left) replaces the token
    hash: the earlier token was never sent, so nothing valid is lost, and no two live tokens exist for
    one link. The caller must not issue again once the text has gone."""
    token = new_token()
    link = await session.scalar(select(MagicLink).where(MagicLink.workflow_id == workflow_id).with_for_update())
    if link is None:
        link = MagicLink(
            token_hash=token_hash(token),
            user_id=user_id,
            purpose=purpose,
            claim_id=target.claim_id,
            requirement_id=target.requirement_id,
            workflow_id=workflow_id,
            created_by_agent_id=agent_id,
            created_at=now,
            expires_at=now + min(ttl, MAX_TTL),
        )
        session.add(link)
    else:
        link.token_hash = token_hash(token)
    await session.flush()
    return link, token


@dataclass(frozen=True)
class VerifiedLink:
    link_id: int
    user_id: int
    purpose: str
    claim_id: int | None
    requirement_id: int | None
    workflow_id: str | None
    expires_at: datetime
    used_at: datetime


async def consume(*, session: AsyncSession, token: str, now: datetime) -> VerifiedLink:
    """Use the link (once). Raises :class:`MagicLinkNotFound`, :class:`MagicLinkUsed` or
    :class:`MagicLinkExpired`; see the module docstring."""
    if not _TOKEN.match(token):
        raise MagicLinkNotFound()
    digest = token_hash(token)
    row = (
        await session.execute(
            update(MagicLink)
            .where(MagicLink.token_hash == digest, MagicLink.used_at.is_(None), MagicLink.expires_at > now)
            .values(used_at=now)
            .returning(
                MagicLink.id,
                MagicLink.user_id,
                MagicLink.purpose,
                MagicLink.claim_id,
                MagicLink.requirement_id,
                MagicLink.workflow_id,
                MagicLink.expires_at,
            )
        )
    ).one_or_none()
    if row is not None:
        return VerifiedLink(
            row.id, row.user_id, row.purpose, row.claim_id, row.requirement_id, row.workflow_id, row.expires_at, now
        )
    found = (
        await session.execute(select(MagicLink.used_at, MagicLink.expires_at).where(MagicLink.token_hash == digest))
    ).one_or_none()
    if found is None:
        raise MagicLinkNotFound()
    if found.used_at is not None:
        raise MagicLinkUsed()
    raise MagicLinkExpired()


async def withdraw(*, session: AsyncSession, link_id: int, now: datetime) -> None:
    """End a link whose text could not be sent: it expires now (it was never usable anyway)."""
    await session.execute(
        update(MagicLink).where(MagicLink.id == link_id, MagicLink.used_at.is_(None)).values(expires_at=now)
    )


async def settle(*, session: AsyncSession, link_id: int, result: str) -> MagicLink | None:
    """Record the link's result once (``note``); the link if this call recorded it, else None."""
    return await session.scalar(
        update(MagicLink)
        .where(MagicLink.id == link_id, MagicLink.note.is_(None))
        .values(note=result)
        .returning(MagicLink)
    )
