"""Benchmark of callbacks falling due together: lateness from due time to the callbacks queue.

    .venv/bin/python bench/callbacks.py [--callbacks 10000] [--spread 60] [--lead 240] [--book-concurrency 50]

Private MariaDB (``--callbacks`` customers seeded: check_due and the requeue read the replica),
Temporal dev server (WAL), ``bench_*`` PostgreSQL, ``bench:*`` Redis, the real worker in its own
process (bench/_worker.py). The settings' clock offset puts the compliance clock on a Wednesday 11:00
in London so calling hours are open; real elapsed time is kept.

Every customer gets one callback booked through ``activities.callbacks.book_callback`` (starts
CallbackWorkflow: mirror row + requeue + a confirmation SMS as a child SendSmsWorkflow; the API runs so
that the simulated carrier's SMS status webhooks land, unless ``--no-api``). Due times are spread evenly over ``--spread`` seconds
starting ``--lead`` seconds after the first booking (the lead must cover the booking phase; the bench
says so if it did not). When a callback falls due the workflow's durable timer fires, check_due runs
the compliance gates, the mirror row becomes 'due' and the requeue places the customer at the top of
the callbacks queue.

Lateness = first time the customer is seen in the Redis callbacks queue (polled every 100 ms: up to
0.1 s of it is the poll) minus its due time; also, from PostgreSQL at the end, the mirror row's
updated_at when it became 'due' minus due time (no polling error). Reports p50/p99/max, worker CPU and
peak RSS, Temporal server CPU. Everything is deleted at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--callbacks", type=int, default=10_000)
    p.add_argument("--spread", type=float, default=60.0, help="due times spread over this many seconds")
    p.add_argument("--lead", type=float, default=240.0, help="first due time, seconds after booking starts")
    p.add_argument("--book-concurrency", type=int, default=50)
    p.add_argument("--quiet", type=float, default=20.0, help="stop this long after the last new arrival")
    p.add_argument("--no-api", dest="api", action="store_false", help="no API: SMS status webhooks fail (as in run 1)")
    p.add_argument("--ring", type=float, default=0.2)  # unused by callbacks; the worker script wants them
    p.add_argument("--talk", type=float, default=0.5)
    return p.parse_args()


async def main() -> int:
    args = parse_args()
    import psutil
    from sqlalchemy import text

    from activities.callbacks import book_callback
    from activities.queues import queue_engine
    from bench.api_next_call import start_api, stop_api
    from bench.call_sessions import start_worker, stop_worker
    from dialler.callbacks.messages import BookCallbackInput
    from dialler.replica.seed import seed_replica
    from dialler.runtime import Stores

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, temporal=True) as stack:
        settings = stack.settings(queue_rebuild_interval_s=86_400)
        await seed_replica(stack.replica_url, users=args.callbacks, seed=5, only_if_empty=False)
        stores = Stores.open(settings)
        engine = queue_engine(stores)
        from sqlalchemy import select

        from bench.api_next_call import create_agents
        from dialler.agents.models import Agent

        emails = await create_agents(stores, 1, stack.unique)
        async with stores.sessions() as session:
            agent_id = await session.scalar(select(Agent.id).where(Agent.email == emails[0]))
        # The API receives the simulated carrier's SMS status webhooks (callbacks text a confirmation).
        api = start_api(stack, settings, None) if args.api else None
        worker = start_worker(stack, settings, args)
        temporal_pid = next(
            (
                c.pid
                for c in psutil.Process(os.getpid()).children(recursive=True)
                if "temporal" in " ".join(c.cmdline()[:2])
            ),
            None,
        )
        client = stack.env.client
        n = args.callbacks
        t_start = datetime.now(UTC)
        first_due = t_start + timedelta(seconds=args.lead)
        due = {u: first_due + timedelta(seconds=args.spread * (u - 1) / max(n - 1, 1)) for u in range(1, n + 1)}
        sem = asyncio.Semaphore(args.book_concurrency)
        failures: list[str] = []

        async def book(u: int) -> None:
            async with sem:
                try:
                    await book_callback(
                        client, settings, BookCallbackInput(user_id=u, due_at=due[u], booked_by_agent_id=agent_id)
                    )
                except Exception as exc:  # noqa: BLE001
                    failures.append(repr(exc)[:120])

        seen: dict[int, float] = {}
        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(book(u) for u in range(1, n + 1)))
            book_s = time.perf_counter() - t0
            print(
                f"booked {n - len(failures)} callbacks in {book_s:.1f} s ({(n - len(failures)) / book_s:.0f}/s), "
                f"load {load()}",
                flush=True,
            )
            slack = (first_due - datetime.now(UTC)).total_seconds()
            if slack < 5:
                print(f"warning: booking overran the lead time (slack {slack:.1f} s): raise --lead", file=sys.stderr)
            # Let the booking activities (mirror + requeue) drain before the window opens.
            await asyncio.sleep(max(0.0, slack - 2))
            key = engine.keys.queue("callbacks")
            pids = {"worker": worker.pid}
            if temporal_pid:
                pids["temporal"] = temporal_pid
            with RssSampler(pids) as sampler:
                # Until every callback has reached the queue, or (some are cancelled at due time by the
                # compliance check: deleted, deceased, no callable number) nothing new for --quiet s
                # after the last due time.
                last_due = first_due.timestamp() + args.spread
                last_new = time.time()
                while len(seen) < n - len(failures):
                    members = await stores.redis.zrange(key, 0, -1)
                    now = time.time()
                    for m in members:
                        u = int(m)
                        if u not in seen:
                            seen[u] = now
                            last_new = now
                    if now > last_due and now - max(last_new, last_due) > args.quiet:
                        break
                    await asyncio.sleep(0.1)
            window_load = load()
            async with stores.postgres.connect() as conn:
                cancelled = await conn.scalar(text("SELECT count(*) FROM callbacks WHERE status = 'cancelled'"))
                rows = (
                    await conn.execute(
                        text(
                            "SELECT user_id, due_at, updated_at, status FROM callbacks WHERE status IN ('due', 'open')"
                        )
                    )
                ).all()
        finally:
            stop_worker(worker)
            if api is not None:
                stop_api(api)
            await stores.close()

        late = [seen[u] - due[u].timestamp() for u in seen]
        mirror = [(r.updated_at - r.due_at).total_seconds() for r in rows]
        early = sum(1 for x in late if x < -0.5)
        print(f"\n## Callbacks due together: {n:,} due over {args.spread:.0f} s ({n / args.spread:.0f}/s)\n")
        print("| measure | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|")
        for name, xs in (
            ("due → in callbacks queue (Redis poll, 0.1 s)", late),
            ("due → mirror row 'due' (PostgreSQL updated_at)", mirror),
        ):
            print(
                f"| {name} | {len(xs)} | {percentile(xs, 50):.2f} s | {percentile(xs, 90):.2f} s | "
                f"{percentile(xs, 99):.2f} s | {max(xs, default=float('nan')):.2f} s |"
            )
        last_seen = max(seen.values(), default=float("nan")) - (first_due.timestamp() + args.spread)
        print(f"\n| metric | value |\n|---|---|\n| booking {n:,} callbacks | {book_s:.1f} s ({n / book_s:.0f}/s) |")
        print(f"| booking failures | {len(failures)} {failures[:2]} |")
        print(
            f"| never reached the queue (cancelled at due time by check_due, or late) | {n - len(failures) - len(seen)} |"
        )
        print(f"| cancelled at due time (mirror) | {cancelled} |")
        print(f"| seen before due - 0.5 s (should be 0) | {early} |")
        print(f"| last customer queued after the last due time | {last_seen:.1f} s |")
        print(
            f"| due → queued throughput | {len(seen) / max(sampler.elapsed, 1e-9):.0f}/s over {sampler.elapsed:.0f} s |"
        )
        for name in pids:
            print(
                f"| {name}: CPU {sampler.cpu[name]:.1f} s ({sampler.cpu_pct(name):.0f} % of one core), peak RSS | "
                f"{sampler.peak[name]:.0f} MB |"
            )
        print(f"| load average at end of window | {window_load} |")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
