"""Object-level access to a customer (OWASP API1): an agent works only with the customers they hold a
lease on or have called; supervisors and admins with any."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.calls.models import CallSession
from dialler.queues.engine import QueueEngine


async def may_work_with(*, session: AsyncSession, engine: QueueEngine, agent: Agent, user_id: int) -> bool:
    if Permission.CUSTOMERS_READ_ANY in permissions_of(agent.role):
        return True
    lease = await engine.lease_of(user_id)
    if lease is not None and lease.agent_id == agent.id:
        return True
    called = await session.scalar(
        select(CallSession.id).where(CallSession.user_id == user_id, CallSession.agent_id == agent.id).limit(1)
    )
    return called is not None
