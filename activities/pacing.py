"""Pacing activities: the queue's floor (one read per tick) and the calls the pacer decided on,
placed through the same call-session path as an agent's next call (lease, session, dial).

Placing is idempotent per tick: ``PlaceCallsInput.key`` is the workflow run and tick, and a Redis
hash under it records each agent a call was attempted for and how many pooled calls were taken, so a
retry of the activity places nothing twice (a crash between the record and the lease places one call
fewer, never one more)."""

from __future__ import annotations

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client

from dialler.agents.models import Agent
from dialler.calls.service import CallOffered, take_next_call, take_pooled_call
from dialler.errors import Conflict
from dialler.pacing import floor
from dialler.pacing.messages import PacingSnapshot, PlaceCallsInput, PlaceCallsResult, SnapshotInput
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from workflows.call_session_client import CallSessionStarter

PLACED_TTL_S = 3600


class PacingActivities:
    def __init__(self, stores: Stores, client: Client) -> None:
        self.stores = stores
        self.client = client

    @activity.defn
    async def pacing_snapshot(self, input: SnapshotInput) -> PacingSnapshot:
        return await floor.snapshot(self.stores, input.queue)

    @activity.defn
    async def place_paced_calls(self, input: PlaceCallsInput) -> PlaceCallsResult:
        redis, settings = self.stores.redis, self.stores.settings
        done = f"{settings.redis_prefix}:pacing:placed:{input.key}"
        starter = CallSessionStarter(self.client, settings.temporal_task_queue)
        engine = queue_engine(self.stores)
        placed_for: list[int] = []
        sessions: list[str] = []
        reason: str | None = None
        if input.agent_ids:
            async with self.stores.sessions() as session:
                agents = {
                    a.id: a
                    for a in (
                        await session.scalars(select(Agent).where(Agent.id.in_(input.agent_ids), Agent.active))
                    ).all()
                }
                for agent_id in input.agent_ids:
                    agent = agents.get(agent_id)
                    if agent is None or not await redis.hsetnx(done, f"agent:{agent_id}", "1"):
                        continue
                    await redis.expire(done, PLACED_TTL_S)
                    try:  # refused (PhoneNotReady) when the phone dropped since the snapshot
                        offered = await take_next_call(
                            session=session,
                            stores=self.stores,
                            start_session=starter,
                            engine=engine,
                            agent=agent,
                            queue=input.queue,
                            progressive=True,
                        )
                        await session.commit()
                    except Conflict as exc:  # took a customer meanwhile, not available, paused
                        await session.rollback()
                        activity.logger.info("no paced call for agent %s: %s", agent_id, exc.code)
                        continue
                    if isinstance(offered, CallOffered):
                        placed_for.append(agent_id)
                        sessions.append(offered.session_id)
                    else:
                        reason = offered.reason
        pooled = 0
        for _ in range(input.pooled):
            if await redis.hincrby(done, "pooled", 1) > input.pooled:
                break
            await redis.expire(done, PLACED_TTL_S)
            try:
                taken = await take_pooled_call(
                    stores=self.stores, start_session=starter, engine=engine, queue=input.queue
                )
            except Conflict as exc:
                reason = exc.message
                break
            if not isinstance(taken, CallOffered):
                reason = taken.reason
                break
            pooled += 1
            sessions.append(taken.session_id)
        return PlaceCallsResult(placed_for=tuple(placed_for), pooled=pooled, session_ids=tuple(sessions), reason=reason)
