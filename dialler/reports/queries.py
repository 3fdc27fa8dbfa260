"""The reports, read from PostgreSQL. Definitions (shown on the Reports page too):

* **time in state** comes from the presence history: a stint runs from its row's ``started_at`` to the
  agent's next row (or now), clipped to the period. *Logged in* is every state but ``offline``;
  *talk* is ``on_call``; breaks are split by their reason.
* **calls** are call sessions started in the period; **contacts** are outcomes recorded in the period
  whose disposition reached the customer (``dialler.calls.dispositions``); **calls per hour** is calls
  ÷ hours logged in.
* **contact rate** = contacts ÷ outcomes (the dashboard's measure); **attempts** are contact attempts.
* **conversion**: of the customers called in the period in a queue, how many had a signature (or a
  document) arrive through CDC within ``conversion_days`` after that call.
* **abandoned rate (rolling 24 h)** at an hour = abandoned calls ÷ calls answered by a person among the
  sessions started in the 24 hours ending with that hour (the Ofcom measure; ceiling 3 %, our target 1 %).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dialler.calls.dispositions import EFFECTS, Disposition
from dialler.pacing.abandon_rate import DEFAULT_CEILING, OFCOM_LIMIT
from dialler.queues.keys import QUEUES
from dialler.reports import rollups
from dialler.reports.periods import Period

# One home for both numbers: dialler.pacing (the ceiling that pauses progressive dialling, per queue).
OFCOM_CEILING = float(OFCOM_LIMIT)
TARGET_CEILING = float(DEFAULT_CEILING)
DEFAULT_CONVERSION_DAYS = 7


def reached(code: str) -> bool:
    """Whether a disposition reached the customer (a retired code did not)."""
    try:
        return EFFECTS[Disposition(code)].contact
    except ValueError:
        return False


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


OUTCOME = "outcome:"


async def _counts(conn: AsyncConnection, period: Period, lo: datetime, grain: str) -> list[rollups.Count]:
    """The period's call counts of one grain (from ``lo``): rolled up for closed days, raw for the rest
    (rollups.py)."""
    return await rollups.counts(conn, lo, period.end, grains=(grain,), day_lo=period.start, rolled=not period.offset)


def _outcomes(measures: dict[str, int]) -> dict[str, int]:
    return {m.removeprefix(OUTCOME): n for m, n in measures.items() if m.startswith(OUTCOME) and n}


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- agents ----------------------------------------------------------------------------------------


class AgentRow(BaseModel):
    agent_id: int
    display_name: str
    logged_in_s: int
    available_s: int
    reserved_s: int
    on_call_s: int
    wrap_up_s: int
    break_s: int
    break_by_reason: dict[str, int]
    calls: int
    contacts: int
    calls_per_hour: float | None
    outcomes: dict[str, int]


async def agent_report(
    conn: AsyncConnection, period: Period, *, now: datetime, agent_id: int | None = None
) -> list[AgentRow]:
    """Per agent: time in each state, calls, contacts, calls per hour and outcomes. Agents with no
    presence, call or outcome in the period are left out."""
    # Rolled days from the rollup (time in state included), the rest from the raw rows.
    cut = await rollups.covered_until(conn, period.start, period.end) if not period.offset else period.start
    seconds: dict[int, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    if cut < period.end:
        params: dict[str, Any] = {"start": cut, "end": period.end, "now": now, "agent_id": agent_id}
        for row in await conn.execute(rollups.STINTS, params):
            seconds[row.agent_id][(row.state, row.reason)] += float(row.seconds)
    calls: dict[int, int] = {}
    outcomes: dict[int, dict[str, int]] = defaultdict(dict)
    counted = await rollups.counts(conn, period.start, period.end, grains=("agent",), cut=cut)
    for key, measures in rollups.by(counted, "agent").items():
        if agent_id is not None and int(key) != agent_id:
            continue
        if measures.get("calls"):
            calls[int(key)] = measures["calls"]
        outcomes[int(key)] |= _outcomes(measures)
        for measure, us in measures.items():
            if measure.startswith(rollups.PRESENCE):
                state, _, reason = measure.removeprefix(rollups.PRESENCE).partition(":")
                seconds[int(key)][(state, reason)] += us / 1e6
    ids = sorted(set(seconds) | set(calls) | set(outcomes))
    names = {}
    if ids:
        found = await conn.execute(text("SELECT id, display_name FROM agents WHERE id = ANY(:ids)"), {"ids": ids})
        names = {row.id: row.display_name for row in found}
    return [agent_row(i, names.get(i, f"#{i}"), seconds[i], calls.get(i, 0), outcomes[i]) for i in ids]


def agent_row(
    agent_id: int, name: str, seconds: dict[tuple[str, str], float], calls: int, outcomes: dict[str, int]
) -> AgentRow:
    def state(name: str) -> int:
        return round(sum(s for (st, _), s in seconds.items() if st == name))

    logged_in = round(sum(s for (st, _), s in seconds.items() if st != "offline"))
    breaks = {reason or "unspecified": round(s) for (st, reason), s in seconds.items() if st == "break"}
    return AgentRow(
        agent_id=agent_id,
        display_name=name,
        logged_in_s=logged_in,
        available_s=state("available"),
        reserved_s=state("reserved"),
        on_call_s=state("on_call"),
        wrap_up_s=state("wrap_up"),
        break_s=state("break"),
        break_by_reason=dict(sorted(breaks.items())),
        calls=calls,
        contacts=sum(n for code, n in outcomes.items() if reached(code)),
        calls_per_hour=round(calls / (logged_in / 3600), 2) if logged_in else None,
        outcomes=dict(sorted(outcomes.items())),
    )


# --- queues ----------------------------------------------------------------------------------------


class QueueRow(BaseModel):
    queue: str
    attempts: int
    outcomes: int
    contacts: int
    contact_rate: float | None
    customers_called: int
    signatures: int  # customers called whose signature arrived within conversion_days after the call
    documents: int  # customers called who had a document requirement met within conversion_days
    conversion_rate: float | None  # customers with a signature or a document ÷ customers called


class CallbacksSummary(BaseModel):
    due: int
    kept: int  # completed
    missed: int
    rebooked: int  # due in the period and rebooked (another callback names it as rebooked_from)
    cancelled: int


class DepthPoint(BaseModel):
    hour: datetime  # UTC start of the hour
    queue: str
    average: float
    peak: int


class QueueReport(BaseModel):
    conversion_days: int
    queues: list[QueueRow]
    callbacks: CallbacksSummary
    waiting: list[DepthPoint]


# One row per (queue, customer called in the period): did a signature / a document arrive within
# N days after one of their calls there?
_QUEUE_CONVERSIONS = text(
    """
    SELECT s.queue, s.user_id,
           bool_or(EXISTS (SELECT 1 FROM conversion_events c WHERE c.user_id = s.user_id AND c.kind = 'signature'
                            AND c.occurred_at >= s.started_at AND c.occurred_at < s.started_at + :window)) AS signed,
           bool_or(EXISTS (SELECT 1 FROM conversion_events c WHERE c.user_id = s.user_id AND c.kind = 'document'
                            AND c.occurred_at >= s.started_at AND c.occurred_at < s.started_at + :window)) AS documented
      FROM call_sessions s
     WHERE s.started_at >= :start AND s.started_at < :end
     GROUP BY s.queue, s.user_id
    """
)
_CALLBACKS = text(
    """
    SELECT count(*) AS due,
           count(*) FILTER (WHERE c.status = 'completed') AS kept,
           count(*) FILTER (WHERE c.status = 'missed') AS missed,
           count(*) FILTER (WHERE c.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM callbacks r WHERE r.rebooked_from_id = c.id)) AS rebooked
      FROM callbacks c WHERE c.due_at >= :start AND c.due_at < :end
    """
)
_WAITING = text(
    """
    SELECT date_trunc('hour', sampled_at AT TIME ZONE 'UTC') AS hour, queue,
           avg(depth) AS average, max(depth) AS peak
      FROM queue_depth_samples WHERE sampled_at >= :start AND sampled_at < :end
     GROUP BY 1, 2 ORDER BY 1, 2
    """
)


async def queue_report(
    conn: AsyncConnection, period: Period, *, conversion_days: int = DEFAULT_CONVERSION_DAYS
) -> QueueReport:
    params: dict[str, Any] = {"start": period.start, "end": period.end, "window": timedelta(days=conversion_days)}
    found = rollups.by(await _counts(conn, period, period.start, "queue"), "queue")
    attempts = {q: m["attempts"] for q, m in found.items() if m.get("attempts")}
    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    for q, measures in found.items():
        if _outcomes(measures):
            outcomes[q] = _outcomes(measures)
    called: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for row in await conn.execute(_QUEUE_CONVERSIONS, params):
        called[row.queue].append((bool(row.signed), bool(row.documented)))
    names = list(QUEUES) + sorted((set(attempts) | set(outcomes) | set(called)) - set(QUEUES))
    rows = []
    for q in names:
        total = sum(outcomes[q].values())
        contacts = sum(n for code, n in outcomes[q].items() if reached(code))
        customers = called[q]
        converted = sum(1 for signed, documented in customers if signed or documented)
        rows.append(
            QueueRow(
                queue=q,
                attempts=attempts.get(q, 0),
                outcomes=total,
                contacts=contacts,
                contact_rate=rate(contacts, total),
                customers_called=len(customers),
                signatures=sum(1 for signed, _ in customers if signed),
                documents=sum(1 for _, documented in customers if documented),
                conversion_rate=rate(converted, len(customers)),
            )
        )
    cb = (await conn.execute(_CALLBACKS, params)).one()
    waiting = [
        DepthPoint(hour=_utc(row.hour), queue=row.queue, average=round(float(row.average), 2), peak=int(row.peak))
        for row in await conn.execute(_WAITING, params)
    ]
    return QueueReport(
        conversion_days=conversion_days,
        queues=rows,
        callbacks=CallbacksSummary(
            due=int(cb.due),
            kept=int(cb.kept),
            missed=int(cb.missed),
            rebooked=int(cb.rebooked),
            cancelled=int(cb.cancelled),
        ),
        waiting=waiting,
    )


# --- compliance ------------------------------------------------------------------------------------


class AbandonedHour(BaseModel):
    hour: datetime  # UTC start of the hour
    queue: str
    answered: int  # in this hour
    abandoned: int  # in this hour
    answered_24h: int  # in the 24 hours ending with this hour
    abandoned_24h: int
    rate_24h: float | None
    over_target: bool
    over_ceiling: bool


class RefusalRow(BaseModel):
    path: str
    reason: str
    refused: int


class ComplianceReport(BaseModel):
    ceiling: float = OFCOM_CEILING
    target: float = TARGET_CEILING
    abandoned: int
    answered: int
    rate: float | None
    hours: list[AbandonedHour]
    refusals: list[RefusalRow]


_REFUSALS = text(
    """
    SELECT path, coalesce(blocking_rule, 'unknown') AS reason, count(*) AS n FROM compliance_decisions
     WHERE NOT allowed AND decided_at >= :start AND decided_at < :end
     GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2
    """
)


async def compliance_report(conn: AsyncConnection, period: Period) -> ComplianceReport:
    window = timedelta(hours=24)
    params = {"from_at": period.start - window + timedelta(hours=1), "start": period.start, "end": period.end}
    # Per queue and hour, from 23 hours before the period (for the first hours' rolling window).
    hourly: dict[tuple[str, datetime], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in await _counts(conn, period, params["from_at"], "queue"):
        if c.grain == "queue" and c.measure in ("calls", "answered", "abandoned"):
            hourly[(c.key, c.bucket)][c.measure] += c.n
    counts = {k: (m["answered"], m["abandoned"]) for k, m in hourly.items()}
    hours = rolling_abandoned(counts, period.hours())
    in_period = [(a, b) for (_, h), (a, b) in counts.items() if period.start <= h < period.end]
    answered, abandoned = sum(a for a, _ in in_period), sum(b for _, b in in_period)
    refusals = [
        RefusalRow(path=row.path, reason=row.reason, refused=int(row.n))
        for row in await conn.execute(_REFUSALS, params)
    ]
    return ComplianceReport(
        abandoned=abandoned, answered=answered, rate=rate(abandoned, answered), hours=hours, refusals=refusals
    )


def rolling_abandoned(
    counts: dict[tuple[str, datetime], tuple[int, int]], hours: list[datetime]
) -> list[AbandonedHour]:
    """Each queue's rolling 24-hour abandoned rate at each hour (a pure function of hourly counts)."""
    queues = list(QUEUES) + sorted({q for q, _ in counts} - set(QUEUES))
    out = []
    for q in queues:
        for hour in hours:
            answered_24h = abandoned_24h = 0
            for back in range(24):
                a, b = counts.get((q, hour - timedelta(hours=back)), (0, 0))
                answered_24h += a
                abandoned_24h += b
            here = counts.get((q, hour), (0, 0))
            r = rate(abandoned_24h, answered_24h)
            out.append(
                AbandonedHour(
                    hour=hour,
                    queue=q,
                    answered=here[0],
                    abandoned=here[1],
                    answered_24h=answered_24h,
                    abandoned_24h=abandoned_24h,
                    rate_24h=r,
                    over_target=r is not None and r > TARGET_CEILING,
                    over_ceiling=r is not None and r > OFCOM_CEILING,
                )
            )
    return out


# --- messaging -------------------------------------------------------------------------------------


class MessagingReport(BaseModel):
    texts_sent: int
    texts_delivered: int
    texts_failed: int
    texts_received: int
    stops: int
    links_sent: int
    links_opened: int  # verified by the portal (a link is one-time: opened once)
    links_completed: int  # the signature or document the link asked for arrived through CDC (within N days)
    links_by_purpose: dict[str, int]


_TEXTS = text(
    """
    SELECT count(*) FILTER (WHERE direction = 'outbound') AS sent,
           count(*) FILTER (WHERE direction = 'outbound' AND status = 'delivered') AS delivered,
           count(*) FILTER (WHERE direction = 'outbound' AND status IN ('failed', 'undelivered')) AS failed,
           count(*) FILTER (WHERE direction = 'inbound') AS received
      FROM sms_messages WHERE created_at >= :start AND created_at < :end
    """
)
_STOPS = text("SELECT count(*) FROM opt_outs WHERE created_at >= :start AND created_at < :end")
_LINKS = text(
    """
    SELECT l.purpose, count(*) AS sent, count(l.used_at) AS opened,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM conversion_events c WHERE c.user_id = l.user_id
                  AND c.kind = CASE WHEN l.purpose = 'sign' THEN 'signature' ELSE 'document' END
                  AND c.occurred_at >= l.created_at AND c.occurred_at < l.created_at + :window)) AS completed
      FROM magic_links l WHERE l.created_at >= :start AND l.created_at < :end
     GROUP BY l.purpose
    """
)


async def messaging_report(
    conn: AsyncConnection, period: Period, *, conversion_days: int = DEFAULT_CONVERSION_DAYS
) -> MessagingReport:
    params: dict[str, Any] = {"start": period.start, "end": period.end, "window": timedelta(days=conversion_days)}
    texts = (await conn.execute(_TEXTS, params)).one()
    stops = int((await conn.execute(_STOPS, params)).scalar_one())
    links = list(await conn.execute(_LINKS, params))
    return MessagingReport(
        texts_sent=int(texts.sent),
        texts_delivered=int(texts.delivered),
        texts_failed=int(texts.failed),
        texts_received=int(texts.received),
        stops=stops,
        links_sent=sum(int(r.sent) for r in links),
        links_opened=sum(int(r.opened) for r in links),
        links_completed=sum(int(r.completed) for r in links),
        links_by_purpose={r.purpose: int(r.sent) for r in links},
    )


# --- by hour ---------------------------------------------------------------------------------------


class HourRow(BaseModel):
    hour: datetime  # UTC start of the hour
    calls: int
    contacts: int


async def hourly_report(conn: AsyncConnection, period: Period) -> list[HourRow]:
    """Calls started and contacts made in each hour of the period (every hour listed, zeros included)."""
    calls: dict[datetime, int] = defaultdict(int)
    contacts: dict[datetime, int] = defaultdict(int)
    for c in await _counts(conn, period, period.start, "queue"):
        if c.grain != "queue":
            continue
        if c.measure == "calls":
            calls[c.bucket] += c.n
        elif c.measure.startswith(OUTCOME) and reached(c.measure.removeprefix(OUTCOME)):
            contacts[c.bucket] += c.n
    return [HourRow(hour=h, calls=calls.get(h, 0), contacts=contacts.get(h, 0)) for h in period.hours()]


# --- queue depth -----------------------------------------------------------------------------------


class DepthSample(BaseModel):
    at: datetime  # the minute sampled (or the hour, for periods over two days)
    queue: str
    depth: float  # customers waiting (an hour's average for periods over two days)


_DEPTH = text(
    """
    SELECT date_trunc(:unit, sampled_at AT TIME ZONE 'UTC') AS at, queue, avg(depth) AS depth
      FROM queue_depth_samples WHERE sampled_at >= :start AND sampled_at < :end
     GROUP BY 1, 2 ORDER BY 1, 2
    """
)


async def depth_samples(conn: AsyncConnection, period: Period) -> list[DepthSample]:
    """Queue depths over the period: every minute for up to two days, hourly averages beyond (a year
    of minutes would be half a million points per queue)."""
    unit = "minute" if period.days <= 2 else "hour"
    params = {"unit": unit, "start": period.start, "end": period.end}
    return [
        DepthSample(at=_utc(row.at), queue=row.queue, depth=round(float(row.depth), 2))
        for row in await conn.execute(_DEPTH, params)
    ]
