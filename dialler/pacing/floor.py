"""The queue's floor as the pacer sees it, read from Redis and PostgreSQL: who is ready, what is
ringing, talking and wrapping up, the estimates, and the rate against the ceiling.

**Ready** is one definition, used by the pacer's snapshot and by the claim at a pooled call's answer
(``dialler.calls.answered.claim_agent``): an active agent assigned to the queue, whose presence is
``available``, who holds no customer (no lease), and whose phone's heartbeat is fresh (the device
key, ``dialler.calls.inbound.device_key``, lives ``device_ready_ttl_s``: a closed tab or a dropped
phone is not ready within seconds). Longest idle first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import any_, literal, select, text

from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.presence import held_customers, presence_key
from dialler.calls.inbound import device_key
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import abandon_rate
from dialler.pacing.hour_of_day import enough_for_hour_of_day, same_hour_windows
from dialler.pacing.messages import PacingSnapshot
from dialler.pacing.predictive import Estimates, Estimator, needs_agent
from dialler.runtime import Stores

__all__ = ["estimates", "ready_agents", "snapshot"]

# The most calls the estimates learn from (the latest), about the answer estimate's decay (0.002).
ESTIMATE_CALLS = 500
# A call still "ringing" after this long is a record a lost worker left behind, not a call.
STALE_RING = timedelta(minutes=5)


async def ready_agents(stores: Stores, queue: str) -> list[int]:
    """The queue's ready agents (see the module's docstring), longest idle first."""
    async with stores.postgres.connect() as conn:
        ids = list(
            (await conn.scalars(select(Agent.id).where(Agent.active, literal(queue) == any_(Agent.queues)))).all()
        )
    if not ids:
        return []
    redis, settings = stores.redis, stores.settings
    async with redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hmget(presence_key(settings, agent_id), "state", "since")
            pipe.exists(device_key(settings, agent_id))
        replies = await pipe.execute()
    found: list[tuple[float, int]] = []
    for i, agent_id in enumerate(ids):
        (state, since), device = replies[2 * i], replies[2 * i + 1]
        state = state.decode() if isinstance(state, bytes) else state
        if state == "available" and device:
            since_s = float(since.decode() if isinstance(since, bytes) else since) if since else 0.0
            found.append((since_s, agent_id))
    held = await held_customers(redis, settings, [a for _, a in found])
    return [a for _, a in sorted(found) if a not in held]


_FLOOR = text(
    """
    SELECT status, agent_id IS NULL AS pooled, started_at, answered_at, ended_at
      FROM call_sessions
     WHERE queue = :queue AND closed_at IS NULL AND started_at > :since
       AND status IN ('dialing', 'ringing', 'in_progress', 'wrap_up')
    """
)
# What each learning call did: its ring, talk and wrap-up, and whether a machine answered.
_HISTORY_COLUMNS = """
    SELECT s.started_at, s.answered_at, s.ended_at, s.closed_at, s.agent_id IS NOT NULL AS took,
           coalesce(a.result, '') = 'voicemail' AS machine
      FROM call_sessions s
      LEFT JOIN contact_attempts a ON a.call_session_id = s.id
"""
_LEARNS = "s.queue = :queue AND s.progressive AND s.closed_at IS NOT NULL AND s.end_reason IS NOT NULL"
# The same local hour on each of the last days (one index range per day), the latest first.
_SAME_HOUR = text(
    _HISTORY_COLUMNS
    + f"""
      JOIN unnest(CAST(:froms AS timestamptz[]), CAST(:tos AS timestamptz[])) AS h(from_at, to_at)
        ON s.started_at >= h.from_at AND s.started_at < h.to_at
     WHERE {_LEARNS}
     ORDER BY s.started_at DESC
     LIMIT :limit
    """
)
_LAST_DAY = text(
    _HISTORY_COLUMNS
    + f"""
     WHERE {_LEARNS} AND s.started_at > :since
     ORDER BY s.started_at DESC
     LIMIT :limit
    """
)


async def estimates(stores: Stores, queue: str, now: datetime) -> Estimates:
    """Decayed means of what the queue's dialled calls did, from the configured starting values: the
    calls of this local hour of day over the last days, or of the last 24 h while this hour has too
    few (``dialler.pacing.hour_of_day``)."""
    settings = stores.settings
    estimator = Estimator.starting(
        Estimates(
            answer_probability=settings.pacing_answer_probability,
            ring_s=settings.pacing_ring_s,
            talk_s=settings.pacing_talk_s,
            wrap_s=settings.pacing_wrap_s,
        )
    )
    windows = same_hour_windows(now, settings.calling_timezone)
    async with stores.postgres.connect() as conn:
        rows = (
            await conn.execute(
                _SAME_HOUR,
                {
                    "queue": queue,
                    "froms": [start for start, _ in windows],
                    "tos": [end for _, end in windows],
                    "limit": ESTIMATE_CALLS,
                },
            )
        ).all()
        if not enough_for_hour_of_day(len(rows)):
            rows = (
                await conn.execute(
                    _LAST_DAY, {"queue": queue, "since": now - timedelta(hours=24), "limit": ESTIMATE_CALLS}
                )
            ).all()
    amd_on = settings.answering_machine_detection
    for r in reversed(rows):  # oldest first: the latest weigh most
        answered = r.answered_at is not None
        takes_agent = needs_agent(answered=answered, machine=bool(r.machine), amd_on=amd_on)
        ring = (r.answered_at - r.started_at).total_seconds() if answered else None
        estimator.dialled(person=takes_agent, machine=bool(r.machine), ring_s=ring)
        if answered and r.ended_at is not None and not r.machine:
            estimator.talk.observe((r.ended_at - r.answered_at).total_seconds())
            if r.took and r.closed_at is not None:
                estimator.wrap.observe((r.closed_at - r.ended_at).total_seconds())
    return estimator.estimates()


async def snapshot(stores: Stores, queue: str) -> PacingSnapshot:
    settings = stores.settings
    now = datetime.now(UTC)
    instant = clock.instant()
    amd = settings.answering_machine_detection
    ready = await ready_agents(stores, queue)
    async with stores.postgres.connect() as conn:
        rows = (await conn.execute(_FLOOR, {"queue": queue, "since": now - timedelta(hours=4)})).all()
    ringing: list[float] = []
    talking: list[float] = []
    wrapping: list[float] = []
    for r in rows:
        if r.status in ("dialing", "ringing") and r.pooled and now - r.started_at < STALE_RING:
            ringing.append(max(0.0, (now - r.started_at).total_seconds()))
        elif r.status == "in_progress" and r.answered_at is not None:
            talking.append(max(0.0, (now - r.answered_at).total_seconds()))
        elif r.status == "wrap_up" and r.ended_at is not None:
            wrapping.append(max(0.0, (now - r.ended_at).total_seconds()))
    day = (await pacing.rate_inputs(stores.postgres, now=instant, amd_on=amd))[queue]
    hour = (await pacing.rate_inputs(stores.postgres, now=instant, amd_on=amd, window=timedelta(hours=1)))[queue]
    rate = abandon_rate(day)
    recent = abandon_rate(hour)
    ceiling = (await pacing.ceilings(stores.postgres))[queue]
    mode = (await pacing.queue_pacing(stores.postgres))[queue]
    return PacingSnapshot(
        queue=queue,
        at=now,
        mode=mode.mode.value,
        max_ratio=float(mode.max_ratio),
        ceiling=float(ceiling),
        rate=rate.rate,
        abandoned=day.abandoned,
        live_answered=day.live_answered,
        ready_agents=tuple(ready),
        in_flight=len(ringing),
        ringing_for_s=tuple(round(x, 1) for x in sorted(ringing)),
        wrapping_for_s=tuple(round(x, 1) for x in sorted(wrapping)),
        talking_for_s=tuple(round(x, 1) for x in sorted(talking)),
        estimates=await estimates(stores, queue, now),
        recent_rate=recent.rate or 0.0,
        recent_answered=hour.live_answered + hour.abandoned,
    )
