"""Presence: an agent's own state, and the floor view for supervisors.

The next-call route (``POST /agents/me/next-call``) is not here: it belongs with the queue engine.
Its lease is what makes the agent reserved (``dialler.agents.presence.effective``); it writes no presence.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth import PROTECTED_RESPONSES, require
from api.deps import RedisDep, SessionDep, SettingsDep
from dialler.agents.errors import PresenceTransitionRefused
from dialler.agents.models import Agent, Role
from dialler.agents.permissions import Permission
from dialler.agents.presence import (
    Presence,
    PresenceState,
    agent_targets,
    get_presence,
    list_presence,
    set_presence,
)
from dialler.agents.schemas import AgentPresenceList, AgentPresenceRead, PresenceRead, PresenceUpdate
from dialler.agents.service import utcnow
from dialler.calls.leases import free_stranded_agents

router = APIRouter(prefix="/agents", tags=["presence"], responses=PROTECTED_RESPONSES)


def _read(presence: Presence) -> PresenceRead:
    return PresenceRead(
        agent_id=presence.agent_id,
        state=presence.state,
        reason=presence.reason,
        since=presence.since,
        seconds_in_state=presence.seconds_in_state(utcnow()),
        user_id=presence.user_id,
        can_set=agent_targets(presence.state),
    )


@router.get("/me/presence", response_model=PresenceRead)
async def get_my_presence(
    agent: Annotated[Agent, Depends(require(Permission.PROFILE_READ))],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> PresenceRead:
    """The caller's state, how long they have been in it, and the states they may choose next."""
    return _read(await get_presence(session=session, redis=redis, settings=settings, agent_id=agent.id))


@router.put("/me/presence", response_model=PresenceRead)
async def set_my_presence(
    body: PresenceUpdate,
    agent: Annotated[Agent, Depends(require(Permission.PRESENCE_WRITE))],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> PresenceRead:
    """Sets the caller's state: offline, available or break (a break needs a reason from the
    configured list). Reserved, on_call and wrap_up are set by the dialler only; a refused change is
    409 with the reason, e.g. no break while on a call. An agent the dialler left in one of those with
    no call behind it (no lease, no open session) is freed first, with an audit line: their own click
    is what finds them stranded."""

    async def change() -> Presence:
        return await set_presence(
            session=session,
            redis=redis,
            settings=settings,
            agent_id=agent.id,
            target=body.state,
            reason=body.reason,
            now=utcnow(),
        )

    try:
        return _read(await change())
    except PresenceTransitionRefused:
        if not await free_stranded_agents(session, redis, settings, utcnow(), agent_ids=[agent.id]):
            raise
    return _read(await change())


@router.get("/presence", response_model=AgentPresenceList)
async def list_all_presence(
    _: Annotated[Agent, Depends(require(Permission.PRESENCE_READ_ALL))],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> AgentPresenceList:
    """Every active agent with their state, reason and time in state, and the count per state."""
    now = utcnow()
    rows = await list_presence(session=session, redis=redis, settings=settings)
    items = [
        AgentPresenceRead(
            agent_id=row.agent_id,
            display_name=row.display_name,
            role=Role(row.role),
            queues=row.queues,
            state=row.presence.state,
            reason=row.presence.reason,
            since=row.presence.since,
            seconds_in_state=row.presence.seconds_in_state(now),
            user_id=row.presence.user_id,
        )
        for row in rows
    ]
    counts = Counter(item.state.value for item in items)
    return AgentPresenceList(items=items, counts={s.value: counts.get(s.value, 0) for s in PresenceState}, at=now)
