"""The supervisor's dashboard: one snapshot of the floor, computed from the stores that own each number.

* PostgreSQL: today's outcomes, contact rate, abandoned calls over 24 h, drain rate, callbacks, the
  last rebuild (durable numbers, so the board agrees with the database);
* Redis: queue depths and agent presence (the live state), the CDC publisher's status hash;
* SQS: the dead-letter queue's approximate depth.

Each part degrades on its own: a store that does not answer makes its part ``None`` ("n/a" on the
screen) instead of failing the whole board.

Definitions (shown on the screen too):

* **today** is the UK calendar day (``settings.calling_timezone``) of the business clock
  (``dialler.clock``: the real clock in production, shifted on a demo stack);
* **contact rate** = outcomes today whose disposition reached the customer (``Effects.contact``) ÷
  outcomes today;
* **abandoned rate (24 h)** = Ofcom's measure (``dialler.pacing``, AMD-adjusted when AMD is on):
  abandoned calls ÷ live calls (answered by a person, drops included) among the sessions started in
  the last 24 h, over every queue; and per queue, against the queue's ceiling, with the reason its
  progressive dialling is paused;
* **drain rate** = customers taken from a queue (call sessions started) in the last 15 minutes,
  expressed per hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler import clock
from dialler.agents.presence import PresenceState, list_presence
from dialler.calls.dispositions import EFFECTS, Disposition
from dialler.cdc import metrics as cdc_metrics
from dialler.config import Settings
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import PacingVerdict, RateInputs, abandon_rate
from dialler.queues.keys import QUEUES, QueueKeys

log = logging.getLogger("dialler.dashboard")

DRAIN_WINDOW = timedelta(minutes=15)
LIST_LIMIT = 10
SQS_TIMEOUT_S = 2.0


# --- shapes ----------------------------------------------------------------------------------------


class BoardRow(BaseModel):
    agent_id: int
    display_name: str
    role: str
    queues: list[str]
    state: str
    reason: str | None
    since: datetime | None
    user_id: int | None
    customer_name: str | None
    temporal_url: str
    customer_temporal_url: str | None


class Board(BaseModel):
    items: list[BoardRow]
    counts: dict[str, int]


class QueuePacing(BaseModel):
    """A queue's abandoned-call rate over 24 h against its ceiling (dialler.pacing), with the reason
    its progressive dialling is paused."""

    abandoned: int
    live_answered: int
    machine: int
    rate: float | None
    ceiling: float
    state: str
    reason: str | None


class QueueRow(BaseModel):
    queue: str
    depth: int | None
    taken_15m: int | None
    drain_per_hour: int | None
    temporal_url: str
    pacing: QueuePacing | None = None


class Outcomes(BaseModel):
    total: int
    contacts: int
    contact_rate: float | None
    by_disposition: dict[str, int]


class Abandoned(BaseModel):
    answered: int
    abandoned: int
    rate: float | None


class CallbackRow(BaseModel):
    user_id: int
    due_at: datetime
    status: str
    owner_agent_id: int | None
    temporal_url: str


class Callbacks(BaseModel):
    due_now: int
    upcoming_today: int
    missed_today: int
    completed_today: int
    due: list[CallbackRow]
    missed: list[CallbackRow]


class Cdc(BaseModel):
    publisher_state: str | None = None
    lag_s: float | None = None
    last_event_at: datetime | None = None
    published_total: int | None = None
    updated_at: datetime | None = None
    dlq_messages: int | None = None
    dlq_last_reason: str | None = None  # why the consumer last dead-lettered a change record


class Rebuild(BaseModel):
    workflow_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    drift: dict[str, Any]
    drift_total: int
    fill: bool = Field(
        default=False,
        description="The rebuild filled empty queues (fresh install, flushed Redis): what it added is not drift",
    )
    temporal_url: str


class DashboardRead(BaseModel):
    """The floor at ``generated_at``; parts a store could not give are null."""

    generated_at: datetime
    day_start: datetime
    agents: Board | None
    queues: list[QueueRow]
    outcomes_today: Outcomes | None
    abandoned_24h: Abandoned | None
    callbacks: Callbacks | None
    cdc: Cdc
    last_rebuild: Rebuild | None
    temporal_ui_url: str


# --- links into the Temporal Web UI ----------------------------------------------------------------


def temporal_search_url(settings: Settings, attribute: str, value: str | int) -> str:
    """The Temporal UI's workflow list filtered on one search attribute (e.g. ``AgentId="3"``)."""
    base = settings.temporal_ui_url.rstrip("/")
    query = quote(f'{attribute}="{value}"', safe="")
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows?query={query}"


def temporal_workflow_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


# --- the parts -------------------------------------------------------------------------------------


def day_start(now: datetime, settings: Settings) -> datetime:
    """Local midnight (UK) of ``now``'s day on the business clock, as a real instant (dialler.clock)."""
    return clock.day_start(settings, now)


async def board(*, session: AsyncSession, redis: Redis, replica: AsyncEngine, settings: Settings) -> Board:
    rows = await list_presence(session=session, redis=redis, settings=settings)
    names = await customer_names(replica, {r.presence.user_id for r in rows if r.presence.user_id is not None})
    items = [
        BoardRow(
            agent_id=r.agent_id,
            display_name=r.display_name,
            role=r.role,
            queues=r.queues,
            state=r.presence.state.value,
            reason=r.presence.reason,
            since=r.presence.since,
            user_id=r.presence.user_id,
            customer_name=names.get(r.presence.user_id) if r.presence.user_id is not None else None,
            temporal_url=temporal_search_url(settings, "AgentId", r.agent_id),
            customer_temporal_url=(
                temporal_search_url(settings, "UserId", r.presence.user_id) if r.presence.user_id is not None else None
            ),
        )
        for r in rows
    ]
    counts = Counter(item.state for item in items)
    return Board(items=items, counts={s.value: counts.get(s.value, 0) for s in PresenceState})


_NAMES = text("SELECT id, first_name, last_name FROM users WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


async def customer_names(replica: AsyncEngine, user_ids: set[int]) -> dict[int, str]:
    """ "First L." for the customers agents are working on; empty when the replica does not answer."""
    if not user_ids:
        return {}
    try:
        async with replica.connect() as conn:
            rows = (await conn.execute(_NAMES, {"ids": sorted(user_ids)})).all()
    except (SQLAlchemyError, OSError) as exc:
        log.warning("customer names unavailable for the dashboard: %s", type(exc).__name__)
        return {}
    return {r.id: f"{r.first_name} {r.last_name[:1]}." if r.last_name else str(r.first_name) for r in rows}


async def queue_rows(*, postgres: AsyncEngine, redis: Redis, settings: Settings, now: datetime) -> list[QueueRow]:
    keys = QueueKeys(settings.redis_prefix)
    depths: dict[str, int] | None
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for q in QUEUES:
                pipe.zcard(keys.queue(q))
            counts = await pipe.execute()
        depths = {q: int(c) for q, c in zip(QUEUES, counts, strict=True)}
    except (RedisError, OSError):
        depths = None
    paced: dict[str, PacingVerdict] | None
    try:
        paced = await pacing.verdicts(postgres, now=now, amd_on=settings.answering_machine_detection)
    except (SQLAlchemyError, OSError):
        paced = None
    taken: dict[str, int] | None
    try:
        async with postgres.connect() as conn:
            rows = await conn.execute(
                text("SELECT queue, count(*) AS n FROM call_sessions WHERE started_at >= :since GROUP BY queue"),
                {"since": now - DRAIN_WINDOW},
            )
            taken = {r.queue: int(r.n) for r in rows}
    except (SQLAlchemyError, OSError):
        taken = None
    per_hour = timedelta(hours=1) / DRAIN_WINDOW
    return [
        QueueRow(
            queue=q,
            depth=None if depths is None else depths.get(q, 0),
            taken_15m=None if taken is None else taken.get(q, 0),
            drain_per_hour=None if taken is None else round(taken.get(q, 0) * per_hour),
            temporal_url=temporal_search_url(settings, "QueueType", q),
            pacing=None if paced is None else _pacing(paced[q]),
        )
        for q in QUEUES
    ]


def _pacing(v: PacingVerdict) -> QueuePacing:
    return QueuePacing(
        abandoned=v.rate.inputs.abandoned,
        live_answered=v.rate.inputs.live_answered,
        machine=v.rate.inputs.machine,
        rate=v.rate.rate,
        ceiling=float(v.ceiling),
        state=v.state.value,
        reason=v.reason,
    )


async def outcomes_today(*, postgres: AsyncEngine, since: datetime) -> Outcomes:
    async with postgres.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT disposition, count(*) AS n FROM call_outcomes WHERE recorded_at >= :since"
                " GROUP BY disposition ORDER BY disposition"
            ),
            {"since": since},
        )
        by = {r.disposition: int(r.n) for r in rows}
    total = sum(by.values())
    contacts = sum(n for code, n in by.items() if _reached(code))
    return Outcomes(
        total=total,
        contacts=contacts,
        contact_rate=(contacts / total) if total else None,
        by_disposition=by,
    )


def _reached(code: str) -> bool:
    try:
        return EFFECTS[Disposition(code)].contact
    except ValueError:  # a code retired since the row was written
        return False


async def abandoned_24h(*, postgres: AsyncEngine, now: datetime, amd_on: bool) -> Abandoned:
    """Every queue's calls together, by Ofcom's measure (dialler.pacing): ``answered`` is the live
    calls, drops included, machines not; ``rate`` is AMD-adjusted when AMD is on."""
    per_queue = await pacing.rate_inputs(postgres, now=now, amd_on=amd_on)
    total = RateInputs(
        abandoned=sum(i.abandoned for i in per_queue.values()),
        live_answered=sum(i.live_answered for i in per_queue.values()),
        machine=sum(i.machine for i in per_queue.values()),
        amd_on=amd_on,
    )
    return Abandoned(
        answered=total.live_answered + total.abandoned,
        abandoned=total.abandoned,
        rate=abandon_rate(total).rate,
    )


async def callbacks_summary(*, postgres: AsyncEngine, settings: Settings, since: datetime) -> Callbacks:
    tomorrow = since + timedelta(days=1, hours=2)  # next local midnight, whatever DST does tonight...
    tomorrow = day_start(tomorrow, settings)  # ...snapped back onto it
    async with postgres.connect() as conn:
        counts = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status IN ('due', 'open')) AS due_now,"
                    " count(*) FILTER (WHERE status = 'scheduled' AND due_at < :tomorrow) AS upcoming_today,"
                    " count(*) FILTER (WHERE status = 'missed' AND updated_at >= :since) AS missed_today,"
                    " count(*) FILTER (WHERE status = 'completed' AND updated_at >= :since) AS completed_today"
                    " FROM callbacks"
                ),
                {"since": since, "tomorrow": tomorrow},
            )
        ).one()
        listed = (
            await conn.execute(
                text(
                    "(SELECT user_id, due_at, status, owner_agent_id FROM callbacks"
                    "  WHERE status IN ('due', 'open') ORDER BY due_at LIMIT :n)"
                    " UNION ALL"
                    " (SELECT user_id, due_at, status, owner_agent_id FROM callbacks"
                    "  WHERE status = 'missed' AND updated_at >= :since ORDER BY updated_at DESC LIMIT :n)"
                ),
                {"since": since, "n": LIST_LIMIT},
            )
        ).all()
    rows = [
        CallbackRow(
            user_id=r.user_id,
            due_at=r.due_at,
            status=r.status,
            owner_agent_id=r.owner_agent_id,
            temporal_url=temporal_workflow_url(settings, f"callback-{r.user_id}"),
        )
        for r in listed
    ]
    return Callbacks(
        due_now=int(counts.due_now),
        upcoming_today=int(counts.upcoming_today),
        missed_today=int(counts.missed_today),
        completed_today=int(counts.completed_today),
        due=[r for r in rows if r.status != "missed"],
        missed=[r for r in rows if r.status == "missed"],
    )


def publisher_status_key(settings: Settings) -> str:
    # Mirrors dialler.cdc.publisher.status_key without importing the binlog reader's dependencies.
    return f"{settings.redis_prefix}:cdc:publisher"


def _float(raw: Any) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _int(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _when(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw if isinstance(raw, str) else raw.decode())
    except (TypeError, ValueError):
        return None


async def cdc_status(*, redis: Redis, settings: Settings, dlq_depth: Callable[[], Awaitable[int | None]]) -> Cdc:
    fields: dict[Any, Any] = {}
    with contextlib.suppress(RedisError, OSError):
        fields = await redis.hgetall(publisher_status_key(settings))  # type: ignore[misc]
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    return Cdc(
        publisher_state=fields.get("state") or None,
        lag_s=_float(fields.get("lag_s")),
        last_event_at=_when(fields.get("last_event_at")),
        published_total=_int(fields.get("published_total")),
        updated_at=_when(fields.get("updated_at")),
        dlq_messages=await dlq_depth(),
        dlq_last_reason=await _last_dead_letter_reason(redis, settings),
    )


async def _last_dead_letter_reason(redis: Redis, settings: Settings) -> str | None:
    with contextlib.suppress(RedisError, OSError):
        value = await redis.hget(cdc_metrics.key(settings.redis_prefix), "dead_letter_reason")  # type: ignore[misc]
        return (value.decode() if isinstance(value, bytes) else value) or None
    return None


def sqs_dlq_depth(sqs_client: Callable[[], Any], settings: Settings) -> Callable[[], Awaitable[int | None]]:
    """An async reader of the dead-letter queue's approximate depth (None when SQS does not answer)."""

    def read() -> int:
        client = sqs_client()
        url = client.get_queue_url(QueueName=settings.cdc_dlq_name)["QueueUrl"]
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    async def depth() -> int | None:
        try:
            return await asyncio.wait_for(asyncio.to_thread(read), SQS_TIMEOUT_S)
        except Exception as exc:  # botocore raises many unrelated types; the board shows "n/a"
            log.info("DLQ depth unavailable: %s", type(exc).__name__)
            return None

    return depth


async def last_rebuild(*, postgres: AsyncEngine, settings: Settings) -> Rebuild | None:
    async with postgres.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT workflow_id, trigger, started_at, finished_at, counts, drift FROM queue_rebuilds"
                    " ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1"
                )
            )
        ).one_or_none()
    if row is None:
        return None
    drift = dict(row.drift or {})
    counts = dict(row.counts or {})
    total = sum(
        int(d.get("added", 0)) + int(d.get("removed", 0)) + int(d.get("rescored", 0))
        for d in drift.values()
        if isinstance(d, dict)
    )
    return Rebuild(
        workflow_id=row.workflow_id,
        trigger=row.trigger,
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=counts,
        drift=drift,
        drift_total=total,
        fill=bool(counts.get("fill", False)),
        temporal_url=temporal_workflow_url(settings, row.workflow_id),
    )


async def _part(name: str, make: Awaitable[Any]) -> Any:
    try:
        return await make
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("dashboard part %s unavailable: %s", name, type(exc).__name__)
        return None


async def snapshot(
    *,
    session: AsyncSession,
    postgres: AsyncEngine,
    replica: AsyncEngine,
    redis: Redis,
    settings: Settings,
    dlq_depth: Callable[[], Awaitable[int | None]],
    now: datetime | None = None,
) -> DashboardRead:
    """Every number of the board at ``now`` (real UTC)."""
    now = now or clock.instant()
    since = day_start(now, settings)
    # The session-bound part runs first (one AsyncSession is not safe to share across tasks).
    agents = await _part("agents", board(session=session, redis=redis, replica=replica, settings=settings))
    queues, outcomes, abandoned, callbacks, cdc, rebuild = await asyncio.gather(
        queue_rows(postgres=postgres, redis=redis, settings=settings, now=now),
        _part("outcomes", outcomes_today(postgres=postgres, since=since)),
        _part("abandoned", abandoned_24h(postgres=postgres, now=now, amd_on=settings.answering_machine_detection)),
        _part("callbacks", callbacks_summary(postgres=postgres, settings=settings, since=since)),
        cdc_status(redis=redis, settings=settings, dlq_depth=dlq_depth),
        _part("rebuild", last_rebuild(postgres=postgres, settings=settings)),
    )
    return DashboardRead(
        generated_at=now,
        day_start=since,
        agents=agents,
        queues=queues,
        outcomes_today=outcomes,
        abandoned_24h=abandoned,
        callbacks=callbacks,
        cdc=cdc,
        last_rebuild=rebuild,
        temporal_ui_url=settings.temporal_ui_url,
    )
