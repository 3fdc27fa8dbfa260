"""The claim portal's server-to-server API: verify (and consume) a magic link.

Authenticated with the portal's API key in ``X-Portal-Key`` (compared in constant time), not with an
agent's bearer token: the portal is a machine. The token is consumed atomically, so two clicks (or two
portal servers) can never both succeed. Answers:

* 200: the link is valid and now used; the body says who (customer) and what (sign, or upload for a
  claim requirement);
* 401 ``invalid_portal_key``: no key or a wrong one (nothing is consumed);
* 404 ``magic_link_not_found``: unknown, malformed or tampered token (one answer for all three);
* 409 ``magic_link_used``: used before;
* 410 ``magic_link_expired``: expired (or withdrawn because the text could not be sent).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from api.deps import SessionDep, SettingsDep, temporal_or_none
from api.errors import ErrorRead, Unauthorized
from dialler.audit.service import record
from dialler.comms import magic_links
from dialler.comms.messages import LinkUsed
from workflows.magic_link_client import link_used

log = logging.getLogger("dialler.api.portal")
portal_key = APIKeyHeader(
    name="X-Portal-Key",
    auto_error=False,
    scheme_name="portalKey",
    description="The claim portal's API key (`DIALLER_PORTAL_API_KEY`).",
)


class InvalidPortalKey(Unauthorized):
    code = "invalid_portal_key"


async def require_portal_key(settings: SettingsDep, key: Annotated[str | None, Depends(portal_key)]) -> None:
    expected = settings.portal_api_key.get_secret_value().encode()
    if not key or not hmac.compare_digest(key.encode(), expected):
        raise InvalidPortalKey("A valid X-Portal-Key header is required.")


def _error(description: str) -> dict[str, object]:
    return {"model": ErrorRead, "description": description}


router = APIRouter(
    prefix="/portal",
    tags=["portal"],
    dependencies=[Depends(require_portal_key)],
    responses={
        401: _error("No X-Portal-Key, or a wrong one."),
        404: _error("Unknown, malformed or tampered token."),
        409: _error("The link was used before."),
        410: _error("The link has expired."),
        422: _error("The request is not valid."),
    },
)


class MagicLinkVerify(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="The token from the link (after `/m/`)")


class MagicLinkVerified(BaseModel):
    """Who (``user_id``) and what: ``sign`` (optionally for ``claim_id``), or ``upload`` for
    ``requirement_id`` of ``claim_id``."""

    link_id: int
    user_id: int
    purpose: str
    claim_id: int | None
    requirement_id: int | None
    expires_at: datetime
    used_at: datetime


@router.post("/magic-links/verify", response_model=MagicLinkVerified)
async def verify_magic_link(body: MagicLinkVerify, request: Request, session: SessionDep) -> MagicLinkVerified:
    """Consume a magic link: valid once, until it expires."""
    link = await magic_links.consume(session=session, token=body.token, now=datetime.now(UTC))
    await record(
        session=session,
        action="magic_link.used",
        actor_agent_id=None,
        subject_type="magic_link",
        subject_id=link.link_id,
        client_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
        details={"user_id": link.user_id, "purpose": link.purpose},
    )
    await session.commit()
    temporal = await temporal_or_none(request)
    if temporal is not None and link.workflow_id:
        try:
            await link_used(temporal, link.workflow_id, LinkUsed(link.link_id))
        except RPCError as exc:  # the workflow reads the row when it ends: "used" is not lost
            log.info("magic link %s used; its workflow was not signalled: %s", link.link_id, exc.status)
    return MagicLinkVerified(
        link_id=link.link_id,
        user_id=link.user_id,
        purpose=link.purpose,
        claim_id=link.claim_id,
        requirement_id=link.requirement_id,
        expires_at=link.expires_at,
        used_at=link.used_at,
    )
