"""Rollups: the call counts the reports need, kept per UK day so a 90-day report reads a few thousand
rows instead of millions of call sessions.

One home for each definition: ``_COUNTS`` below is the only SQL that turns raw rows into counts. It is
run over ``[lo, hi)`` both to fill ``report_counts`` for closed days and, by the reports, over the
part of a period not rolled up yet (today, and any day the schedule has not reached). A report's
figure is therefore the same whether its days were rolled up or not (tests/dialler/reports).

Two grains, so neither multiplies the other (an agent × queue × hour × outcome grain would be as
many rows as the calls themselves):

* ``grain = 'queue'``: per queue and UTC hour (hourly charts, the rolling 24 h abandoned rate);
* ``grain = 'agent'``: per agent and UK day (a period is whole UK days), including the time in each
  presence state (``STINTS``, measure ``us:<state>:<reason>`` in microseconds).

Measures (``measure``): ``calls`` (sessions started), ``answered`` and ``abandoned`` (as in the
compliance report), ``attempts`` (by attempt time), ``outcome:<disposition>`` (by the time recorded).

A day is rolled up by ``roll_day``: delete its rows and insert them again from ``_COUNTS`` in one
transaction, then mark it in ``report_rolled_days``. Running it twice gives the same rows, so the
Temporal Schedule (workflows/report_rollup.py) and the call's finishing activity (which re-rolls a
day already rolled when a late call ends in it) can both call it, and retries add nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialler.reports.periods import local_midnight

UK = ZoneInfo("Europe/London")

# A day is closed for the schedule this long after its UK midnight: calls that began before midnight
# have ended and been given an outcome by then (a later one re-rolls its day as it finishes).
SETTLE = timedelta(hours=2)

# The definition. Every sub-select keeps the raw reports' WHERE clauses (time range on the column the
# report counts by), grouped by the bucket of its grain. :agent_id narrows the agent grain (own report).
_COUNTS = """
    SELECT 'queue' AS grain, s.queue AS key, date_trunc('hour', s.started_at AT TIME ZONE 'UTC') AS bucket,
           v.measure, sum(v.n)::bigint AS n
      FROM call_sessions s LEFT JOIN contact_attempts a ON a.call_session_id = s.id
      CROSS JOIN LATERAL (VALUES ('calls', 1),
                                 ('answered', CASE WHEN s.answered_at IS NOT NULL OR a.abandoned THEN 1 ELSE 0 END),
                                 ('abandoned', CASE WHEN a.abandoned THEN 1 ELSE 0 END)) AS v(measure, n)
     WHERE s.started_at >= :lo AND s.started_at < :hi
     GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT 'queue', s.queue, date_trunc('hour', a.attempted_at AT TIME ZONE 'UTC'), 'attempts', count(*)
      FROM contact_attempts a JOIN call_sessions s ON s.id = a.call_session_id
     WHERE a.attempted_at >= :lo AND a.attempted_at < :hi
     GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT 'queue', s.queue, date_trunc('hour', o.recorded_at AT TIME ZONE 'UTC'), 'outcome:' || o.disposition,
           count(*)
      FROM call_outcomes o JOIN call_sessions s ON s.id = o.call_session_id
     WHERE o.recorded_at >= :lo AND o.recorded_at < :hi
     GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT 'agent', agent_id::text, date_trunc('day', started_at AT TIME ZONE 'Europe/London'), 'calls', count(*)
      FROM call_sessions
     WHERE started_at >= :lo AND started_at < :hi AND agent_id IS NOT NULL
     GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT 'agent', agent_id::text, date_trunc('day', recorded_at AT TIME ZONE 'Europe/London'),
           'outcome:' || disposition, count(*)
      FROM call_outcomes
     WHERE recorded_at >= :lo AND recorded_at < :hi AND agent_id IS NOT NULL
     GROUP BY 1, 2, 3, 4
"""

# Stints overlapping the period: the last one begun at or before the start, every one begun inside,
# each ending where the agent's next one starts (or now). Clipped to [start, min(end, now)).
STINTS = text(
    """
    WITH firsts AS (
        SELECT a.id AS agent_id,
               (SELECT max(p.started_at) FROM agent_presence_events p
                 WHERE p.agent_id = a.id AND p.started_at <= :start) AS from_at
          FROM agents a WHERE (CAST(:agent_id AS bigint) IS NULL OR a.id = :agent_id)
    ), rows AS (
        SELECT e.id, e.agent_id, e.state, e.reason, e.started_at
          FROM agent_presence_events e JOIN firsts f ON f.agent_id = e.agent_id
         WHERE e.started_at >= coalesce(f.from_at, :start) AND e.started_at < :end
    ), stints AS (
        SELECT r.agent_id, r.state, r.reason, r.started_at,
               coalesce(lead(r.started_at) OVER (PARTITION BY r.agent_id ORDER BY r.started_at, r.id),
                        (SELECT min(n.started_at) FROM agent_presence_events n
                          WHERE n.agent_id = r.agent_id AND n.started_at >= :end),
                        :now) AS ended_at
          FROM rows r
    )
    SELECT agent_id, state, coalesce(reason, '') AS reason,
           sum(extract(epoch FROM least(ended_at, :end, :now) - greatest(started_at, :start))) AS seconds
      FROM stints
     WHERE least(ended_at, :end, :now) > greatest(started_at, :start)
     GROUP BY agent_id, state, coalesce(reason, '')
    """
)

# Time in state per agent and state (and reason), in microseconds: a stint clipped at the day's
# midnights, so the days of a period add up to the period's own clipping exactly.
PRESENCE = "us:"
_ROLL_PRESENCE = text(
    f"""
    INSERT INTO report_counts (grain, key, bucket, measure, n)
    SELECT 'agent', agent_id::text, :start, '{PRESENCE}' || state || ':' || reason, round(seconds * 1000000)
      FROM ({STINTS.text}) s WHERE seconds > 0
    """
)

# The agent grain's bucket is a local (naive) UK midnight; stored and compared as that day's instant.
_ROLL = text(
    f"""
    INSERT INTO report_counts (grain, key, bucket, measure, n)
    SELECT grain, key,
           CASE WHEN grain = 'agent' THEN bucket AT TIME ZONE 'Europe/London' ELSE bucket AT TIME ZONE 'UTC' END,
           measure, n
      FROM ({_COUNTS}) c WHERE n > 0
    """
)
_RAW = text(
    f"""
    SELECT grain, key,
           CASE WHEN grain = 'agent' THEN bucket AT TIME ZONE 'Europe/London' ELSE bucket AT TIME ZONE 'UTC' END
             AS bucket,
           measure, n
      FROM ({_COUNTS}) c WHERE n > 0
    """
)
# The agent grain is summed here (its reports want period totals, not one row per agent-day-measure).
_ROLLED = text(
    """
    SELECT grain, key, CASE WHEN grain = 'agent' THEN CAST(:day_lo AS timestamptz) ELSE bucket END AS bucket,
           measure, sum(n) AS n
      FROM report_counts
     WHERE bucket >= :lo AND bucket < :hi AND grain = ANY(:grains) AND (grain = 'queue' OR bucket >= :day_lo)
     GROUP BY 1, 2, 3, 4
    """
)


@dataclass(frozen=True)
class Count:
    grain: str  # queue | agent
    key: str  # the queue's name, or the agent's id
    bucket: datetime  # UTC start of the hour (queue grain); of the UK day, or of the rolled days together (agent)
    measure: str
    n: int


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def day_start(day: date) -> datetime:
    return local_midnight(day, "Europe/London")


def uk_day(at: datetime) -> date:
    return _utc(at).astimezone(UK).date()


async def roll_day(conn: AsyncConnection, day: date, *, at: datetime) -> None:
    """(Re)compute one UK day's rollup rows from the raw rows and mark the day rolled. Idempotent; call
    it inside a transaction (the delete and insert are then seen together or not at all)."""
    lo, hi = day_start(day), day_start(day + timedelta(days=1))
    await conn.execute(text("DELETE FROM report_counts WHERE bucket >= :lo AND bucket < :hi"), {"lo": lo, "hi": hi})
    await conn.execute(_ROLL, {"lo": lo, "hi": hi})
    # ``now`` is past the day's end for a closed day: an agent's open stint is clipped at midnight.
    await conn.execute(_ROLL_PRESENCE, {"start": lo, "end": hi, "now": max(at, hi), "agent_id": None})
    await conn.execute(
        text(
            "INSERT INTO report_rolled_days (day, rolled_at) VALUES (:day, :at)"
            " ON CONFLICT (day) DO UPDATE SET rolled_at = EXCLUDED.rolled_at"
        ),
        {"day": day, "at": at},
    )


async def roll_closed_days(postgres: AsyncEngine, *, now: datetime, back_days: int) -> int:
    """Roll every closed UK day of the last ``back_days`` not rolled yet (one transaction per day).
    Returns how many days were rolled."""
    last = uk_day(now - SETTLE) - timedelta(days=1)
    first = last - timedelta(days=back_days - 1)
    async with postgres.connect() as conn:
        done = set(
            await conn.scalars(
                text("SELECT day FROM report_rolled_days WHERE day >= :first AND day <= :last"),
                {"first": first, "last": last},
            )
        )
    rolled = 0
    day = first
    while day <= last:
        if day not in done:
            async with postgres.begin() as conn:
                await roll_day(conn, day, at=now)
            rolled += 1
        day += timedelta(days=1)
    return rolled


async def reroll_if_rolled(conn: AsyncConnection, instants: list[datetime], *, at: datetime) -> None:
    """A call ended after its day was rolled up (it began before midnight, or its outcome came late):
    roll that day again so the rollup keeps agreeing with the raw rows."""
    days = sorted({uk_day(i) for i in instants})
    rolled = set(await conn.scalars(text("SELECT day FROM report_rolled_days WHERE day = ANY(:days)"), {"days": days}))
    for day in days:
        if day in rolled:
            await roll_day(conn, day, at=at)


async def covered_until(conn: AsyncConnection, lo: datetime, hi: datetime) -> datetime:
    """The end of the run of rolled days that starts with ``lo``'s day (``lo`` itself if that day is
    not rolled), capped at ``hi``."""
    first, last = uk_day(lo), uk_day(hi)
    rolled = set(
        await conn.scalars(
            text("SELECT day FROM report_rolled_days WHERE day >= :first AND day <= :last"),
            {"first": first, "last": last},
        )
    )
    day = first
    while day in rolled and day_start(day) < hi:
        day += timedelta(days=1)
    return min(day_start(day), hi) if day != first else lo


async def counts(
    conn: AsyncConnection,
    lo: datetime,
    hi: datetime,
    *,
    grains: tuple[str, ...] = ("queue", "agent"),
    day_lo: datetime | None = None,
    rolled: bool = True,
    cut: datetime | None = None,
) -> list[Count]:
    """Every count with its bucket in ``[lo, hi)``: from the rollup for the rolled days at the start of
    the range, from the raw rows (by the same definition) for the rest. ``day_lo`` (a UK midnight, by
    default ``lo``) is where the agent grain starts: a report reaching back for a rolling window wants
    the queue grain only there."""
    day_lo = lo if day_lo is None else day_lo
    # A demo stack's shifted business days are not the real UK days the rollup is kept by: raw rows only.
    if cut is None:
        cut = await covered_until(conn, lo, hi) if rolled else lo
    out: list[Count] = []
    params: dict[str, Any] = {"lo": lo, "hi": cut, "day_lo": day_lo, "grains": list(grains)}
    if cut > lo:
        out += [Count(r.grain, r.key, _utc(r.bucket), r.measure, int(r.n)) for r in await conn.execute(_ROLLED, params)]
    if hi > cut:
        for r in await conn.execute(_RAW, {"lo": cut, "hi": hi}):
            bucket = _utc(r.bucket)
            if r.grain in grains and (r.grain == "queue" or bucket >= day_lo):
                out.append(Count(r.grain, r.key, bucket, r.measure, int(r.n)))
    return out


def by(items: list[Count], grain: str) -> dict[str, dict[str, int]]:
    """Totals per key and measure of one grain."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in items:
        if c.grain == grain:
            totals[c.key][c.measure] += c.n
    return totals


@dataclass(frozen=True)
class RollupInput:
    now: datetime  # the workflow's start time: which days count as closed
    back_days: int = 400  # how far back a day not rolled yet is still rolled (reports cover ≤ 366 days)


@dataclass(frozen=True)
class RollupResult:
    days: int  # days rolled by this run
