"""Agent accounts: supervisors read them, admins manage them. Passwords go in, never out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import RedisDep, SessionDep, SettingsDep
from dialler.agents import service
from dialler.agents.models import Agent, Role
from dialler.agents.permissions import Permission
from dialler.agents.schemas import AgentCreate, AgentPage, AgentRead, AgentUpdate, PasswordReset
from dialler.agents.service import utcnow

router = APIRouter(prefix="/agents", tags=["agents"], responses=PROTECTED_RESPONSES)

Reader = Annotated[Agent, Depends(require(Permission.AGENTS_READ))]
Admin = Annotated[Agent, Depends(require(Permission.AGENTS_ADMIN))]
# ``:int`` in the paths keeps ``/agents/presence`` and ``/agents/me/...`` from matching ``{agent_id}``.
AgentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("", response_model=AgentPage)
async def list_agents(
    _: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    role: Role | None = None,
    active: bool | None = None,
) -> AgentPage:
    """Agents by name, paged; filter by role or by active."""
    agents, total = await service.list_agents(session=session, limit=limit, offset=offset, role=role, active=active)
    return AgentPage(items=[AgentRead.model_validate(a) for a in agents], total=total, limit=limit, offset=offset)


@router.post("", response_model=AgentRead, status_code=status.HTTP_201_CREATED)
async def create_agent(body: AgentCreate, request: Request, admin: Admin, session: SessionDep) -> AgentRead:
    """Creates an account. The password needs at least 12 characters; 409 if the email is taken."""
    agent = await service.create_agent(session=session, data=body, ctx=audit_context(request, admin))
    return AgentRead.model_validate(agent)


@router.get("/{agent_id:int}", response_model=AgentRead)
async def get_agent(agent_id: AgentId, _: Reader, session: SessionDep) -> AgentRead:
    """One agent's account."""
    return AgentRead.model_validate(await service.get_or_raise(session=session, agent_id=agent_id))


@router.patch("/{agent_id:int}", response_model=AgentRead)
async def update_agent(
    agent_id: AgentId, body: AgentUpdate, request: Request, admin: Admin, session: SessionDep
) -> AgentRead:
    """Changes the fields sent: email, name, role, queues, trained-for-vulnerable, progressive mode.
    Role changes are audited with the permissions granted and revoked; an admin cannot change their
    own role (409)."""
    agent = await service.update_agent(session=session, agent_id=agent_id, data=body, ctx=audit_context(request, admin))
    return AgentRead.model_validate(agent)


@router.post("/{agent_id:int}/disable", response_model=AgentRead)
async def disable_agent(
    agent_id: AgentId,
    request: Request,
    admin: Admin,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> AgentRead:
    """Blocks sign-in and ends every current sign-in of the agent at once. Idempotent. An admin
    cannot disable their own account (409)."""
    agent = await service.disable_agent(
        session=session,
        redis=redis,
        settings=settings,
        agent_id=agent_id,
        ctx=audit_context(request, admin),
        now=utcnow(),
    )
    return AgentRead.model_validate(agent)


@router.post("/{agent_id:int}/enable", response_model=AgentRead)
async def enable_agent(agent_id: AgentId, request: Request, admin: Admin, session: SessionDep) -> AgentRead:
    """Allows a disabled agent to sign in again. Idempotent."""
    agent = await service.enable_agent(session=session, agent_id=agent_id, ctx=audit_context(request, admin))
    return AgentRead.model_validate(agent)


@router.put("/{agent_id:int}/password", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def reset_password(
    agent_id: AgentId,
    body: PasswordReset,
    request: Request,
    admin: Admin,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> Response:
    """Sets a new password (at least 12 characters) and ends every sign-in of the agent."""
    await service.reset_password(
        session=session,
        redis=redis,
        settings=settings,
        agent_id=agent_id,
        new_password=body.new_password.get_secret_value(),
        ctx=audit_context(request, admin),
        now=utcnow(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
