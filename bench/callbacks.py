"""Benchmark of callbacks falling due together: how late an agent can take them, and what it costs.

    .venv/bin/python bench/callbacks.py [--callbacks 10000] [--spread 60] [--lead SECONDS] [--book-concurrency 50]

The issue's target is the default: 10,000 callbacks due within the same minute. That run takes
about ``lead + spread`` seconds plus the tail, i.e. ~50 minutes with the default lead on this 2-core
machine (measured: 3,021 s), and most of it is booking: each booking starts a CallbackWorkflow and
its confirmation SMS workflow, ~0.18 s of CPU (worker, Temporal, API) measured at 10,000, so 10,000
bookings keep both cores busy for ~15-20 minutes before the callbacks' preparation may start. A
smoke run: ``--callbacks 300`` (~14 minutes: the prepare window alone is 10). ``--book-only`` stops
once the bookings have settled and prints their cost; use it to choose ``--lead`` on another machine.

Private MariaDB (``--callbacks`` customers seeded), Temporal dev server (WAL, in memory), ``bench_*``
PostgreSQL, ``bench:*`` Redis, the real worker in its own process (bench/_worker.py), and the API so
that the Twilio emulator's SMS status webhooks land (``--no-api``: they fail). The settings' clock
offset puts the compliance clock on a Wednesday 11:00 in London so calling hours are open.

Every customer gets one callback through ``workflows.callback_client.book_callback`` (CallbackWorkflow: a
transition local activity for the mirror row and the queue, and a confirmation SMS child workflow).
Due times are spread evenly over ``--spread`` seconds starting ``--lead`` seconds after booking
starts. The lead must cover booking *and* its settling (every booking's activity and text) before
the first preparation, due − ``Settings.callback_prepare_s`` (600 s): the bench prints how long both
took and warns if they ran into the prepare window. Default lead: prepare + 60 s + 0.2 s per
callback (10,000: 2,660 s). The SMS reminder is off (``callback_reminder_s=0``): with a lead that
long, the product's 900 s reminder would send 10,000 more texts in the minute 15 minutes before due,
a separate burst (see the report). The grace is 1,800 s so that the mirror rows stay 'due' while
they are read.

Each workflow prepares its callback between due − prepare and due − prepare/2 (spread by customer,
dialler.callbacks.rules): the compliance check, then the customer into the callbacks queue with a
not-before of its due time, reserved for the booking agent. At the due time the Redis queue makes the
customer callable; the workflow then only records 'due' (mirror row and search attributes).

Measured (the bench polls Redis: every 0.2 s before the first due time, 0.1 s after):

* due → callable, what the booking agent experiences: the customer is in the callbacks queue and its
  not-before has passed. Seen in the queue before its due time with not-before = due, it is callable
  at the due second exactly (the queue enforces it): lateness 0. Seen after its due time, the
  lateness is when it was first seen (up to one poll late).
* headroom: how long before its due time the customer was in the queue (negative: late).
* prepare lag: first seen in the queue − its preparation time (timer → local activity → queue).
* due → mirror row 'due' (PostgreSQL updated_at − due_at): the workflow's own bookkeeping.
* worker, Temporal server and API CPU (seconds and % of one core) and peak RSS, per phase.

Callbacks cancelled at preparation by the compliance check (deleted, deceased, no callable number in
the seeded data: ~8 %) and customers the queue rules never put in the callbacks queue (disabled,
inactive, no active claim: another ~15 %) are counted and left out. The run stops once every other
customer is callable and every live mirror row says 'due', or ``--tail`` seconds after the last due
time. Everything is deleted at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402
from dialler.callbacks.rules import prepare_at  # noqa: E402
from dialler.queues.placement import CALLBACK_PREPARE  # noqa: E402

PREPARE_S = int(CALLBACK_PREPARE.total_seconds())  # Settings.callback_prepare_s default: the queue's window

GRACE_S = 1800
SETTLE_S_PER_CALLBACK = 0.2  # booking and its settling, wall time (0.22 s measured at 300 with load ~4 from others)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--callbacks", type=int, default=10_000, help="callbacks booked, one per customer (10000)")
    p.add_argument("--spread", type=float, default=60.0, help="due times spread evenly over this many seconds (60)")
    p.add_argument(
        "--lead",
        type=float,
        default=None,
        help="first due time, seconds after booking starts (default: prepare + 60 s + 0.2 s per callback)",
    )
    p.add_argument("--book-concurrency", type=int, default=50, help="booking calls in flight (50)")
    p.add_argument("--tail", type=float, default=300.0, help="stop this long after the last due time at the latest")
    p.add_argument("--no-api", dest="api", action="store_false", help="no API: SMS status webhooks fail")
    p.add_argument("--book-only", action="store_true", help="stop once the bookings have settled (booking cost)")
    p.add_argument("--profile-worker", default=None, help="write a cProfile of the worker's event loop here")
    p.add_argument("--ring", type=float, default=0.2, help=argparse.SUPPRESS)  # the worker script wants them
    p.add_argument("--talk", type=float, default=0.5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lead is None:
        args.lead = PREPARE_S + 60 + SETTLE_S_PER_CALLBACK * args.callbacks
    return args


def row(name: str, xs: list[float], unit: str = "s") -> str:
    if not xs:
        return f"| {name} | 0 | – | – | – | – | – |"
    return (
        f"| {name} | {len(xs):,} | {min(xs):.2f} {unit} | {percentile(xs, 50):.2f} {unit} | "
        f"{percentile(xs, 90):.2f} {unit} | {percentile(xs, 99):.2f} {unit} | {max(xs):.2f} {unit} |"
    )


async def main() -> int:
    args = parse_args()
    t_bench = time.monotonic()
    import psutil
    from sqlalchemy import select, text

    from bench.api_next_call import create_agents, start_api, stop_api
    from bench.call_sessions import start_worker, stop_worker
    from devstack.seed import seed_replica
    from dialler.agents.models import Agent
    from dialler.callbacks.messages import BookCallbackInput
    from dialler.queues.eligibility import classify
    from dialler.queues.facts import replica_facts_for_ids
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores
    from workflows.callback_client import book_callback

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    # The worker and API processes read their settings from the environment (bench.api_next_call.api_env).
    timings = {"callback_prepare_s": PREPARE_S, "callback_grace_s": GRACE_S, "callback_reminder_s": 0}
    os.environ.update({f"DIALLER_{k.upper()}": str(v) for k, v in timings.items()})
    async with Stack(mariadb=True, temporal=True) as stack:
        settings = stack.settings(queue_rebuild_interval_s=86_400, **timings)
        await seed_replica(stack.replica_url, users=args.callbacks, seed=5, only_if_empty=False)
        stores = Stores.open(settings)
        engine = queue_engine(stores)
        emails = await create_agents(stores, 1, stack.unique)
        async with stores.sessions() as session:
            agent_id = await session.scalar(select(Agent.id).where(Agent.email == emails[0]))
        api = start_api(stack, settings, None) if args.api else None
        worker = start_worker(stack, settings, args, ["--profile", args.profile_worker] if args.profile_worker else [])
        pids = {"worker": worker.pid}
        temporal_pid = next(
            (
                c.pid
                for c in psutil.Process(os.getpid()).children(recursive=True)
                if "temporal" in " ".join(c.cmdline()[:2])
            ),
            None,
        )
        if temporal_pid:
            pids["temporal"] = temporal_pid
        if api is not None:
            pids["api"] = api.pid

        client = stack.env.client
        n = args.callbacks
        t_start = datetime.now(UTC)
        first_due = t_start + timedelta(seconds=args.lead)
        due = {u: first_due + timedelta(seconds=args.spread * (u - 1) / max(n - 1, 1)) for u in range(1, n + 1)}
        due_s = {u: d.timestamp() for u, d in due.items()}
        first_prepare_s = first_due.timestamp() - PREPARE_S
        last_due_s = first_due.timestamp() + args.spread
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

        async def count(sql: str) -> int:
            async with stores.postgres.connect() as conn:
                return int(await conn.scalar(text(sql)) or 0)

        async def settling() -> tuple[int, int, int]:
            """Mirror rows written, confirmation SMS workflows started, and those still running."""
            rows = await count("SELECT count(*) FROM callbacks")
            texts = await client.count_workflows("WorkflowType = 'SendSmsWorkflow'")
            sending = await client.count_workflows("WorkflowType = 'SendSmsWorkflow' AND ExecutionStatus = 'Running'")
            return rows, texts.count, sending.count

        async def callable_for_a_callback(user_ids: list[int]) -> set[int]:
            """Customers the queue rules put in the callbacks queue for a due callback (the others are
            disabled, inactive, without an active claim...: the callback never makes them callable)."""
            async with stores.replica.connect() as conn:
                found = await replica_facts_for_ids(conn, user_ids)
            return {
                f.user_id
                for f in found
                if (p := classify(replace(f, has_live_callback_due=True))).queue is not None and p.phone_e164
            }

        first_seen: dict[int, float] = {}
        not_before: dict[int, float | None] = {}
        samplers: dict[str, RssSampler] = {}
        try:
            # --- booking, then its settling (mirror rows, confirmation texts) -----------------------
            with RssSampler(pids) as samplers["booking"]:
                t0 = time.perf_counter()
                await asyncio.gather(*(book(u) for u in range(1, n + 1)))
                book_s = time.perf_counter() - t0
                booked = n - len(failures)
                print(f"booked {booked:,} callbacks in {book_s:.1f} s ({booked / book_s:.0f}/s), load {load()}")
                while time.time() < first_prepare_s - 1:
                    rows, texts, sending = await settling()
                    if rows >= booked and texts >= booked and sending == 0:
                        break
                    await asyncio.sleep(1.0)
                settle_s = time.perf_counter() - t0
            rows, texts, sending = await settling()
            slack = first_prepare_s - time.time()
            print(
                f"settled in {settle_s:.1f} s after booking started: {rows:,} mirror rows, {texts:,} confirmation "
                f"texts started ({sending} still sending); {slack:.0f} s before the first prepare time; load {load()}",
                flush=True,
            )
            if rows < booked or texts < booked or sending:
                print("warning: bookings still settling when the prepare window opened: raise --lead", file=sys.stderr)
            if args.book_only:
                for name in pids:
                    sampler = samplers["booking"]
                    print(
                        f"booking ({sampler.elapsed:.0f} s): {name} CPU {sampler.cpu[name]:.1f} s "
                        f"({1000 * sampler.cpu[name] / max(booked, 1):.0f} ms per callback), "
                        f"peak RSS {sampler.peak[name]:.0f} MB"
                    )
                return 0
            expected_users = await callable_for_a_callback(list(range(1, n + 1)))
            await asyncio.sleep(max(0.0, first_prepare_s - 5 - time.time()))

            # --- prepare window and due times: poll the callbacks queue ---------------------------
            key = engine.keys.queue("callbacks")
            nb_key = engine.keys.not_before
            expected = len(expected_users)
            cancelled = 0
            due_rows = 0
            next_count = 0.0
            phase = "prepare"
            samplers["prepare"] = RssSampler(pids).__enter__()
            while True:
                now = time.time()
                if phase == "prepare" and now >= first_due.timestamp():
                    samplers["prepare"].__exit__(None, None, None)
                    samplers["due"] = RssSampler(pids).__enter__()
                    phase = "due"
                members = await stores.redis.zrange(key, 0, -1)
                fresh = [int(m) for m in members if int(m) not in first_seen]
                if fresh:
                    nbs = await stores.redis.hmget(nb_key, [str(u) for u in fresh])
                    for u, nb in zip(fresh, nbs, strict=True):
                        first_seen[u] = now
                        not_before[u] = float(nb) if nb is not None else None
                if now >= next_count:
                    next_count = now + 1.0
                    cancelled = await count("SELECT count(*) FROM callbacks WHERE status = 'cancelled'")
                    due_rows = await count("SELECT count(*) FROM callbacks WHERE status IN ('due', 'open')")
                    seen_all = expected_users <= first_seen.keys()
                    if now > last_due_s and seen_all and due_rows >= booked - cancelled:
                        break
                if now > last_due_s + args.tail:
                    print("warning: stopped at --tail with work outstanding", file=sys.stderr)
                    break
                await asyncio.sleep(0.2 if phase == "prepare" else 0.1)
            samplers[phase].__exit__(None, None, None)
            window_load = load()
            async with stores.postgres.connect() as conn:
                reasons = (
                    await conn.execute(
                        text("SELECT reason, count(*) FROM callbacks WHERE status = 'cancelled' GROUP BY reason")
                    )
                ).all()
                mirror_rows = (
                    await conn.execute(
                        text("SELECT user_id, due_at, updated_at FROM callbacks WHERE status IN ('due', 'open')")
                    )
                ).all()
        finally:
            stop_worker(worker)
            if api is not None:
                stop_api(api)
            await stores.close()

        # A customer seen in the queue is callable from max(first seen, not-before): the queue
        # enforces the not-before, so one seen before its due time with not-before = due is callable
        # at the due second exactly.
        callable_at = {u: max(seen, not_before[u] or seen) for u, seen in first_seen.items()}
        late = [callable_at[u] - due_s[u] for u in callable_at]
        early = sum(1 for u, at in callable_at.items() if at < due_s[u] - 0.001)
        headroom = [due_s[u] - seen for u, seen in first_seen.items()]
        prepare_lag = [seen - prepare_at(due[u], u, PREPARE_S).timestamp() for u, seen in first_seen.items()]
        mirror = [(r.updated_at - r.due_at).total_seconds() for r in mirror_rows]
        on_time = sum(1 for x in late if x <= 0.001)

        print(
            f"\n## Callbacks due together: {n:,} due over {args.spread:.0f} s ({n / args.spread:.0f}/s), "
            f"prepared {PREPARE_S}–{PREPARE_S // 2} s ahead\n"
        )
        print("| measure | n | min | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|")
        print(row("**due → callable by the booking agent** (queue + not-before; Redis poll)", late))
        print(row("due → mirror row 'due' (workflow bookkeeping, PostgreSQL updated_at)", mirror))
        print(row("headroom: in the queue this long before due", headroom))
        print(row("prepare lag: in the queue − its preparation time", prepare_lag))
        print(f"\n| metric | value |\n|---|---|\n| booking {n:,} callbacks (workflow starts) | {book_s:.1f} s |")
        print(f"| bookings settled (mirror rows + confirmation texts) | {settle_s:.1f} s after booking started |")
        print(f"| lead / first prepare after booking started | {args.lead:.0f} s / {args.lead - PREPARE_S:.0f} s |")
        print(f"| booking failures | {len(failures)} {failures[:2]} |")
        print(f"| cancelled at preparation (compliance) | {cancelled} {[tuple(r) for r in reasons]} |")
        print(f"| callable at the due second exactly | {on_time:,} of {len(late):,} |")
        missing = len(expected_users - first_seen.keys())
        print(
            f"| not for the callbacks queue (disabled, inactive, no active claim; the cancelled) | {n - expected:,} |"
        )
        print(f"| for the callbacks queue but never callable by the end (must be 0) | {missing} |")
        print(f"| callable before the due time (must be 0) | {early} |")
        for phase_name, sampler in samplers.items():
            for name in pids:
                print(
                    f"| {phase_name} ({sampler.elapsed:.0f} s): {name} CPU / peak RSS | {sampler.cpu[name]:.1f} s "
                    f"({sampler.cpu_pct(name):.0f} % of one core) / {sampler.peak[name]:.0f} MB |"
                )
        print(f"| load average at the end of the window | {window_load} |")
        print(f"| bench wall time | {time.monotonic() - t_bench:.0f} s |")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
