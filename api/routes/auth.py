"""Sign-in, token refresh, sign-out and the caller's own profile.

Login, refresh and logout are public (their credential is in the body); ``/me`` needs a token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import RedisDep, SessionDep, SettingsDep
from api.errors import ErrorRead
from dialler.agents import service
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.agents.schemas import AgentRead, LoginRequest, LogoutRequest, MeRead, RefreshRequest, TokenRead
from dialler.agents.service import SignedIn, utcnow

router = APIRouter(prefix="/auth", tags=["auth"])

_INVALID = {"model": ErrorRead, "description": "Not valid (the same answer whatever the reason)."}
_LIMITED = {"model": ErrorRead, "description": "Too many failed attempts; see `Retry-After`."}
_BAD_BODY = {"model": ErrorRead, "description": "The request is not valid."}


def _token_read(signed_in: SignedIn) -> TokenRead:
    now = utcnow()
    pair = signed_in.tokens
    return TokenRead(
        access_token=pair.access_token,
        expires_in=max(0, int((pair.access_expires_at - now).total_seconds())),
        refresh_token=pair.refresh_token,
        refresh_expires_in=max(0, int((pair.refresh_expires_at - now).total_seconds())),
    )


@router.post("/login", response_model=TokenRead, responses={401: _INVALID, 422: _BAD_BODY, 429: _LIMITED})
async def login(
    body: LoginRequest, request: Request, session: SessionDep, redis: RedisDep, settings: SettingsDep
) -> TokenRead:
    """Exchanges email and password for an access token (short-lived) and a refresh token.

    Public. A wrong password, an unknown email and a disabled account get the same 401. Failed
    attempts are limited per account and per client address (429 with `Retry-After`)."""
    signed_in = await service.login(
        session=session,
        redis=redis,
        settings=settings,
        email=body.email,
        password=body.password.get_secret_value(),
        ctx=audit_context(request),
        now=utcnow(),
    )
    return _token_read(signed_in)


@router.post("/refresh", response_model=TokenRead, responses={401: _INVALID, 422: _BAD_BODY})
async def refresh(
    body: RefreshRequest, request: Request, session: SessionDep, redis: RedisDep, settings: SettingsDep
) -> TokenRead:
    """Rotates a refresh token: returns a new pair and retires the one presented.

    Public (the refresh token is the credential). Presenting a retired refresh token again ends the
    whole sign-in (every token of its family) and is audited."""
    signed_in = await service.refresh(
        session=session,
        redis=redis,
        settings=settings,
        refresh_token=body.refresh_token.get_secret_value(),
        ctx=audit_context(request),
        now=utcnow(),
    )
    return _token_read(signed_in)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses={422: _BAD_BODY})
async def logout(
    body: LogoutRequest, request: Request, session: SessionDep, redis: RedisDep, settings: SettingsDep
) -> Response:
    """Ends the sign-in of this refresh token: its family is revoked, and access tokens of that
    sign-in stop working at once. Always 204, so it reveals nothing about the token. Public."""
    await service.logout(
        session=session,
        redis=redis,
        settings=settings,
        refresh_token=body.refresh_token.get_secret_value(),
        ctx=audit_context(request),
        now=utcnow(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeRead, responses=PROTECTED_RESPONSES)
async def me(agent: Annotated[Agent, Depends(require(Permission.PROFILE_READ))]) -> MeRead:
    """The signed-in agent's profile and the permissions of their role."""
    return MeRead(
        **AgentRead.model_validate(agent).model_dump(),
        permissions=sorted(p.value for p in permissions_of(agent.role)),
    )
