"""Benchmark of the reports (issue 24 §4): p95 of each report over the last week / 30 days / 90 days,
and the CSV export of 90 days, on 90 days of a 200-agent floor.

    .venv/bin/python bench/reports.py [--scale 1.0] [--runs 20] [--agents 200] [--days 90]

Seeds its own ``bench_*`` PostgreSQL database (bench/_stack.py; dropped at the end) with
``generate_series`` inserts run inside PostgreSQL: ``--agents`` agents, each taking ``111 × --scale``
calls a UK day between 08:00 and 20:00 for ``--days`` days (scale 1: about 2 million call sessions),
each call with its contact attempt (1 % abandoned), outcome and presence history (on call, wrap-up,
available; a break and a log-off a day). Then rolls up every closed day as the schedule would
(timed), and runs each report ``--runs`` times per period through dialler.reports.queries, the code
the API runs. Prints a table (and the machine, the data size and the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine  # noqa: E402

from bench._stack import Stack, exit_now, load, machine, percentile  # noqa: E402
from dialler.reports import csv, queries, rollups  # noqa: E402
from dialler.reports.periods import period, uk_date  # noqa: E402
from dialler.reports.rollups import uk_day  # noqa: E402

CALLS_PER_AGENT_DAY = 111  # 200 agents × 90 days × 111 ≈ 2 million

SEED = [
    (
        "agents",
        """
        INSERT INTO agents (email, display_name, password_hash, role, queues, trained_vulnerable,
                            progressive_mode, active)
        SELECT 'agent' || i || '@bench.invalid', 'Agent ' || i, 'x', 'agent', ARRAY['unsigned'], false, false, true
          FROM generate_series(1, :agents) AS i
        """,
    ),
    (
        "call_sessions",
        """
        INSERT INTO call_sessions (id, workflow_id, user_id, agent_id, queue, phone_e164, status, progressive,
                                   started_at, answered_at, ended_at, end_reason, closed_at)
        SELECT gen_random_uuid(), 'call-' || u, u, a.id, (ARRAY['callbacks', 'unsigned', 'outstanding_requests'])[1 + u % 3],
               '+447700900000', 'closed', false, t, CASE WHEN u % 100 < 45 THEN t + interval '15 s' END,
               t + interval '2 min', 'completed', t + interval '3 min'
          FROM agents a
         CROSS JOIN generate_series(0, :days - 1) AS d
         CROSS JOIN generate_series(0, :per_day - 1) AS k
         CROSS JOIN LATERAL (SELECT ((current_date - :days + d + time '08:00') AT TIME ZONE 'Europe/London')
                                    + k * (interval '12 hours' / :per_day) + (a.id % 60) * interval '1 s' AS t,
                                    (a.id * 1000003 + d * 7919 + k) % 400000 AS u) x
         WHERE t < now()
        """,
    ),
    (
        "contact_attempts",
        """
        INSERT INTO contact_attempts (user_id, phone_e164, channel, call_session_id, agent_id, result, abandoned,
                                      attempted_at)
        SELECT user_id, phone_e164, 'voice', id, agent_id, 'no_answer', user_id % 100 = 7, started_at + interval '2 min'
          FROM call_sessions
        """,
    ),
    (
        "call_outcomes",
        """
        INSERT INTO call_outcomes (call_session_id, user_id, agent_id, disposition, recorded_at)
        SELECT id, user_id, agent_id,
               (ARRAY['no_answer', 'voicemail', 'signed_on_call', 'docs_promised', 'not_interested',
                      'callback_requested'])[1 + user_id % 6],
               started_at + interval '3 min'
          FROM call_sessions
        """,
    ),
    (
        "agent_presence_events",
        """
        INSERT INTO agent_presence_events (agent_id, state, reason, started_at)
        SELECT agent_id, s.state, NULL, started_at + s.after FROM call_sessions
         CROSS JOIN (VALUES ('on_call', interval '0'), ('wrap_up', interval '2 min'),
                            ('available', interval '3 min')) AS s(state, after)
        UNION ALL
        SELECT a.id, b.state, b.reason, ((current_date - :days + d + b.at) AT TIME ZONE 'Europe/London')
          FROM agents a CROSS JOIN generate_series(0, :days - 1) AS d
         CROSS JOIN (VALUES ('available', NULL, time '07:59'), ('break', 'lunch', time '13:00'),
                            ('available', NULL, time '13:30'), ('offline', NULL, time '20:05')) AS b(state, reason, at)
        """,
    ),
]

REPORTS: dict[str, Callable[[AsyncConnection, Any, datetime], Awaitable[Any]]] = {
    "agents": lambda c, p, now: queries.agent_report(c, p, now=now),
    "queues": lambda c, p, now: queries.queue_report(c, p),
    "compliance": lambda c, p, now: queries.compliance_report(c, p),
    "messaging": lambda c, p, now: queries.messaging_report(c, p),
    "hourly": lambda c, p, now: queries.hourly_report(c, p),
    "queue-depth": lambda c, p, now: queries.depth_samples(c, p),
}
CSVS: dict[str, Callable[[Any, Any], Any]] = {
    "agents": csv.agents_csv,
    "queues": csv.queues_csv,
    "compliance": csv.compliance_csv,
    "messaging": csv.messaging_csv,
    "hourly": csv.hourly_csv,
    "queue-depth": csv.depth_csv,
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="calls per agent-day as a fraction of 111")
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--runs", type=int, default=20)
    return p.parse_args()


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}; load average before: {load()}")
    async with Stack() as stack:
        engine = create_async_engine(stack.postgres_url, pool_size=2)
        params = {"agents": args.agents, "days": args.days, "per_day": max(1, round(CALLS_PER_AGENT_DAY * args.scale))}
        seed_start = time.perf_counter()
        async with engine.begin() as conn:
            for table, sql in SEED:
                t0 = time.perf_counter()
                await conn.execute(text(sql), params)
                print(f"seeded {table} in {time.perf_counter() - t0:.1f} s", flush=True)
        async with engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("VACUUM ANALYZE"))
            sizes = {
                t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()  # noqa: S608 (our names)
                for t, _ in SEED
            }
        print(f"seeded in {time.perf_counter() - seed_start:.0f} s: {sizes}", flush=True)

        now = datetime.now(UTC)
        t0 = time.perf_counter()
        rolled = await rollups.roll_closed_days(engine, now=now, back_days=args.days + 1)
        roll_s = time.perf_counter() - t0
        async with engine.connect() as conn:
            counts = (await conn.execute(text("SELECT count(*) FROM report_counts"))).scalar_one()
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE report_counts"))
        print(f"rolled up {rolled} days in {roll_s:.1f} s ({roll_s / max(rolled, 1):.2f} s a day): {counts} rows")

        today = uk_day(now)
        periods = {
            "last week": period(today - timedelta(days=6), today),
            "30 days": period(today - timedelta(days=29), today),
            "90 days": period(today - timedelta(days=args.days - 1), today),
        }
        results: dict[tuple[str, str], float] = {}
        async with engine.connect() as conn:
            for name, fn in REPORTS.items():
                for label, p in periods.items():
                    times = []
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        await fn(conn, p, now)
                        times.append(time.perf_counter() - t0)
                    results[(name, label)] = percentile(times, 95)
                    print(f"  {name:12} {label:9} p95 {results[(name, label)] * 1000:8.0f} ms", flush=True)
            csv_s: dict[str, tuple[float, int]] = {}
            p90 = periods["90 days"]
            for name, fn in REPORTS.items():
                t0 = time.perf_counter()
                report = await fn(conn, p90, now)
                size = sum(len(line.encode()) for line in CSVS[name](p90, report))
                csv_s[name] = (time.perf_counter() - t0, size)
        await engine.dispose()

    print()
    print(f"data: {sizes}; rollup rows {counts}; period ends {uk_date(now)}; {args.runs} runs each")
    print(f"load average after: {load()}")
    print()
    print("| report | last week p95 | 30 days p95 | 90 days p95 | CSV 90 days (query + CSV) |")
    print("|---|---:|---:|---:|---:|")
    for name in REPORTS:
        cells = " | ".join(f"{results[(name, label)] * 1000:.0f} ms" for label in periods)
        took, size = csv_s[name]
        print(f"| {name} | {cells} | {took:.2f} s ({size / 1024:.0f} KiB) |")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    exit_now()
