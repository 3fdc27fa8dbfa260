"""The reports agree with counts computed directly from the raw rows, over random periods.

Random presence stints, call sessions and outcomes over three weeks around the spring and autumn
clock changes; for each of many random periods (1–9 UK days) the time in state, calls, contacts and
hourly buckets are recomputed here in plain Python from the same rows and must match exactly."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.models import Agent, PresenceEvent
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt
from dialler.reports import queries, rollups
from dialler.reports.periods import period
from dialler.runtime import Stores

STATES = ["available", "on_call", "wrap_up", "break", "offline", "reserved"]
DISPOSITIONS = ["signed_on_call", "no_answer", "voicemail", "not_interested", "callback_requested"]
NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("around", [date(2026, 3, 29), date(2026, 10, 25)], ids=["spring", "autumn"])
async def test_random_periods_match_the_raw_rows(stores: Stores, around: date) -> None:
    """Each period is checked three times: nothing rolled up, random days rolled up (so a period mixes
    rollup and raw rows, and the rolling abandoned window crosses the seam), every day rolled up twice
    (a retried roll adds nothing)."""
    rng = random.Random(around.toordinal())
    origin = datetime(around.year, around.month, around.day, tzinfo=UTC) - timedelta(days=10)
    stints: list[tuple[int, str, datetime]] = []
    sessions: list[tuple[int, datetime]] = []
    outcomes: list[tuple[int, str, datetime]] = []
    async with AsyncSession(stores.postgres) as session:
        agents = [Agent(email=f"a{i}@x.org", display_name=f"A{i}", password_hash="x", queues=[]) for i in range(3)]
        session.add_all(agents)
        await session.flush()
        ids = [a.id for a in agents]
        for agent in ids:
            at = origin + timedelta(minutes=rng.randrange(600))
            while at < origin + timedelta(days=21):
                state = rng.choice(STATES)
                stints.append((agent, state, at))
                session.add(
                    PresenceEvent(
                        agent_id=agent, state=state, reason="tea" if state == "break" else None, started_at=at
                    )
                )
                at += timedelta(minutes=rng.randrange(1, 400), seconds=rng.randrange(60))
        for n in range(400):
            agent = rng.choice(ids)
            started = origin + timedelta(seconds=rng.randrange(21 * 86400))
            call = CallSession(
                id=uuid.uuid4(),
                workflow_id=f"call-{n}",
                user_id=n,
                agent_id=agent,
                queue="unsigned",
                phone_e164="+447700900000",
                status="ended",
                started_at=started,
                closed_at=started,
            )
            session.add(call)
            sessions.append((agent, started))
            if rng.random() < 0.7:
                await session.flush()
                code, recorded = rng.choice(DISPOSITIONS), started + timedelta(minutes=rng.randrange(30))
                session.add(
                    CallOutcome(
                        call_session_id=call.id, user_id=n, agent_id=agent, disposition=code, recorded_at=recorded
                    )
                )
                outcomes.append((agent, code, recorded))
                # An attempt (some abandoned, some an hour or a day after the call began) for the queue
                # and compliance reports, whose figures must not change when days are rolled up.
                session.add(
                    ContactAttempt(
                        user_id=n,
                        phone_e164="+447700900000",
                        channel="voice",
                        call_session_id=call.id,
                        agent_id=agent,
                        result=code,
                        abandoned=rng.random() < 0.2,
                        attempted_at=started + timedelta(minutes=rng.randrange(1500)),
                    )
                )
        await session.commit()

    days = [origin.date() + timedelta(days=d) for d in range(-1, 23)]
    raw_figures = {}
    for stage in ("raw", "some days rolled", "all rolled twice"):
        if stage == "some days rolled":
            async with stores.postgres.begin() as conn:
                for day in rng.sample(days, len(days) // 2):
                    await rollups.roll_day(conn, day, at=NOW)
        elif stage == "all rolled twice":
            for _ in range(2):
                async with stores.postgres.begin() as conn:
                    for day in days:
                        await rollups.roll_day(conn, day, at=NOW)
        for first, p in await _check_periods(
            stores, random.Random(around.toordinal()), origin, ids, stints, sessions, outcomes
        ):
            if stage == "raw":
                raw_figures[first] = p
            else:
                # The whole of every report is unchanged by the rollup, not only the figures checked above.
                assert p == raw_figures[first], (stage, first)


async def _check_periods(stores, rng, origin, ids, stints, sessions, outcomes):  # type: ignore[no-untyped-def]
    """The checks of random periods against the raw rows; returns each period's reports as JSON."""
    out = []
    for _ in range(12):
        first = (origin + timedelta(days=rng.randrange(1, 18))).date()
        p = period(first, first + timedelta(days=rng.randrange(9)))
        async with stores.postgres.connect() as conn:
            rows = {r.agent_id: r for r in await queries.agent_report(conn, p, now=NOW)}
            hours = await queries.hourly_report(conn, p)
            compliance = await queries.compliance_report(conn, p)
            queue = await queries.queue_report(conn, p)
        out.append(
            (
                (p.first_day, p.last_day),
                [r.model_dump_json() for r in rows.values()]
                + [h.model_dump_json() for h in hours]
                + [compliance.model_dump_json(), queue.model_dump_json()],
            )
        )

        for agent in ids:
            mine = sorted((at, state) for a, state, at in stints if a == agent)
            seconds: Counter[str] = Counter()
            for i, (at, state) in enumerate(mine):
                end = mine[i + 1][0] if i + 1 < len(mine) else NOW
                overlap = (min(end, p.end) - max(at, p.start)).total_seconds()
                if overlap > 0:
                    seconds[state] += int(overlap)
            calls = sum(1 for a, at in sessions if a == agent and p.start <= at < p.end)
            contacts = sum(
                1 for a, code, at in outcomes if a == agent and p.start <= at < p.end and queries.reached(code)
            )
            row = rows.get(agent)
            got = (
                (row.on_call_s, row.break_s, row.available_s, row.logged_in_s, row.calls, row.contacts)
                if row
                else (0, 0, 0, 0, 0, 0)
            )
            logged_in = sum(s for state, s in seconds.items() if state != "offline")
            expected = (seconds["on_call"], seconds["break"], seconds["available"], logged_in, calls, contacts)
            assert got == expected, (p, agent)

        assert len(hours) == round((p.end - p.start).total_seconds() / 3600)
        by_hour = Counter(at.replace(minute=0, second=0) for _, at in sessions if p.start <= at < p.end)
        assert {h.hour: h.calls for h in hours if h.calls} == dict(by_hour), p
    return out
