"""Benchmark of the full queue rebuild (QueueRebuildWorkflow) on the real worker.

    .venv/bin/python bench/queue_rebuild.py [--users 50000] [--runs 3] [--profile-range 25000]

Starts a private MariaDB (row binlog, 512M buffer pool), a Temporal dev server (WAL), a fresh
PostgreSQL database ``bench_*`` (migrated) and a ``bench:*`` Redis prefix; seeds ``--users``
customers (3 claims, 4 requirements each) with dialler.replica.seed; then runs the workflow on the
real worker (workers.worker.build_worker, in this process) ``--runs`` times. Run 1 is cold (the phone
normalisation LRU cache is empty; MariaDB's buffer pool is warm from the seed), later runs are warm.

Per-phase times come from the workflow history (activity scheduled -> completed): plan, stage
(first range scheduled -> last range completed), swap, record. Peak RSS is this process (worker +
bench driver). Redis memory is MEMORY USAGE (SAMPLES 0) of the live queue keys after the last run.

Then ``--profile-range`` customers (one range, as one stage_range activity) are staged outside
Temporal with a split timer (replica query, phone normalisation cold and warm, PostgreSQL facts,
placement, Redis staging) and under cProfile (top functions by cumulative and own time).
Everything is deleted at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=3, help="rebuilds to run (1st cold, others warm)")
    p.add_argument("--profile-range", type=int, default=25_000, help="customers in the profiled range (0: skip)")
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args()


async def phases_from_history(handle) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from temporalio.api.enums.v1 import EventType

    history = await handle.fetch_history()
    scheduled: dict[int, tuple[str, float]] = {}
    spans: dict[str, list[float]] = {}
    for ev in history.events:
        t = ev.event_time.ToDatetime().timestamp()
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[ev.event_id] = (ev.activity_task_scheduled_event_attributes.activity_type.name, t)
        elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name, t0 = scheduled[ev.activity_task_completed_event_attributes.scheduled_event_id]
            lo_hi = spans.setdefault(name, [t0, t])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], t0), max(lo_hi[1], t)
    return {name: hi - lo for name, (lo, hi) in spans.items()}


async def queue_memory(stores, engine) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    prefix = stores.settings.redis_prefix
    total = 0
    keys = [k async for k in stores.redis.scan_iter(match=f"{prefix}*", count=5000)]
    # Only the live queues (sorted sets and the side hashes), not lease keys or rebuild reports.
    keys = [k for k in keys if ":lease:" not in k and ":rebuild" not in k and ":stg:" not in k]
    for k in keys:
        total += int(await stores.redis.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0") or 0)
    return len(keys), total / 2**20


async def profile_range(stores, engine, n: int) -> str:  # type: ignore[no-untyped-def]
    from dialler import clock
    from dialler.queues import facts as facts_
    from dialler.queues.gates import CallingRules
    from dialler.queues.phones import normalise_phone
    from dialler.queues.placement import decide_all

    settings = stores.settings
    now = clock.now(settings)
    rules = CallingRules.from_settings(settings)
    grace = timedelta(seconds=settings.callback_grace_s)
    lo, hi = 1, n
    t: dict[str, float] = {}

    async def one_pass(label: str, cold: bool) -> None:
        if cold:
            normalise_phone.cache_clear()
        t0 = time.perf_counter()
        async with stores.replica.connect() as conn:
            customer_facts = await facts_.replica_facts_for_range(conn, lo, hi)
        t1 = time.perf_counter()
        phones = sorted({p for f in customer_facts if (p := normalise_phone(f.phone_raw).e164)})
        t2 = time.perf_counter()
        async with stores.postgres.connect() as conn:
            known = await facts_.dialler_facts(conn, now=now, phones=phones, lo_hi=(lo, hi))
        t3 = time.perf_counter()
        decisions = decide_all(customer_facts, known, now=now, rules=rules, callback_grace=grace)
        t4 = time.perf_counter()
        run_id = f"bench-profile-{label}"
        await engine.begin_rebuild(run_id)
        t5 = time.perf_counter()
        await engine.stage_many(run_id, [d.entry for d in decisions if d.entry is not None])
        t6 = time.perf_counter()
        await engine.discard_staging(run_id)
        t[label] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5, t6 - t0 - (t5 - t4))

    await one_pass("cold", cold=True)
    await one_pass("warm", cold=False)
    lines = [
        f"\n### Split timer, one range of {n:,} customers (load {load()})\n",
        "| pass | replica query | phone normalisation | PostgreSQL facts | placement (decide_all) | Redis staging | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, parts in t.items():
        lines.append(f"| {label} phone cache | " + " | ".join(f"{x * 1000:.0f} ms" for x in parts) + " |")

    # cProfile of the same work, cold cache.
    normalise_phone.cache_clear()
    prof = cProfile.Profile()
    prof.enable()
    async with stores.replica.connect() as conn:
        customer_facts = await facts_.replica_facts_for_range(conn, lo, hi)
    phones = sorted({p for f in customer_facts if (p := normalise_phone(f.phone_raw).e164)})
    async with stores.postgres.connect() as conn:
        known = await facts_.dialler_facts(conn, now=now, phones=phones, lo_hi=(lo, hi))
    decisions = decide_all(customer_facts, known, now=now, rules=rules, callback_grace=grace)
    await engine.begin_rebuild("bench-profile-cp")
    await engine.stage_many("bench-profile-cp", [d.entry for d in decisions if d.entry is not None])
    prof.disable()
    await engine.discard_staging("bench-profile-cp")
    for sort in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(22)
        lines.append(
            f"\n<details><summary>cProfile sorted by {sort}</summary>\n\n```\n{buf.getvalue().strip()}\n```\n</details>"
        )
    return "\n".join(lines)


async def main() -> int:
    args = parse_args()
    import httpx

    from activities.queues import queue_engine
    from dialler.integrations.simulated import telephony_for
    from dialler.queues.rebuild import RebuildInput
    from dialler.replica.seed import seed_replica
    from dialler.runtime import Stores
    from workers.worker import build_worker
    from workflows.queue_rebuild import QueueRebuildWorkflow

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, temporal=True) as stack:
        t0 = time.perf_counter()
        report = await seed_replica(stack.replica_url, users=args.users, seed=args.seed, only_if_empty=False)
        seed_s = time.perf_counter() - t0
        print(
            f"seeded users={report.users:,} claims={report.claims:,} requirements={report.requirements:,} "
            f"in {seed_s:.1f} s (load {load()})",
            flush=True,
        )
        settings = stack.settings()
        stores = Stores.open(settings)
        http = httpx.AsyncClient(timeout=10)
        telephony = telephony_for(settings, http)
        client = stack.env.client
        engine = queue_engine(stores)
        rows = []
        try:
            async with build_worker(client, stores, telephony):
                for i in range(args.runs):
                    wf_id = f"queue-rebuild-bench-{stack.unique}-{i}"
                    with RssSampler({"bench": __import__("os").getpid(), "mariadb": stack.mariadb_pid}) as s:
                        t0 = time.perf_counter()
                        handle = await client.start_workflow(
                            QueueRebuildWorkflow.run,
                            RebuildInput(trigger="cli"),
                            id=wf_id,
                            task_queue=settings.temporal_task_queue,
                        )
                        result = await handle.result()
                        wall = time.perf_counter() - t0
                    phases = await phases_from_history(handle)
                    queued = sum(result.counts.values())
                    rows.append((i, wall, phases, queued, result, s, load()))
                    print(
                        f"run {i + 1} ({'cold' if i == 0 else 'warm'}): {wall:.2f} s, queued {queued:,}, "
                        f"phases {', '.join(f'{k}={v:.2f}' for k, v in phases.items())}, load {load()}",
                        flush=True,
                    )
            nkeys, mem_mb = await queue_memory(stores, engine)
            depths = await engine.depths()
            prof = (
                await profile_range(stores, engine, min(args.profile_range, args.users)) if args.profile_range else ""
            )
        finally:
            await telephony.aclose()
            await http.aclose()
            await stores.close()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls = [r[1] for r in rows]
    print(f"\n## Queue rebuild, {args.users:,} users ({3 * args.users:,} claims, {4 * args.users:,} requirements)\n")
    print(
        "| run | wall (start→result) | plan | stage ranges | swap | recompute | record | queued | not queued | worker CPU | MariaDB CPU | load (1/5/15) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, wall, ph, queued, res, s, ld in rows:
        print(
            f"| {i + 1} {'cold' if i == 0 else 'warm'} | {wall:.2f} s | {ph.get('plan_rebuild', 0):.2f} s | "
            f"{ph.get('stage_range', 0):.2f} s | {ph.get('swap_rebuild', 0):.2f} s | "
            f"{ph.get('recompute_users', 0):.2f} s | {ph.get('record_rebuild', 0):.2f} s | {queued:,} | "
            f"{sum(res.not_queued.values()):,} | {s.cpu['bench']:.1f} s | {s.cpu['mariadb']:.1f} s | {ld} |"
        )
    print(
        f"\n| metric | value |\n|---|---|\n| p50 wall over {len(walls)} runs | {percentile(walls, 50):.2f} s |\n"
        f"| min / max wall | {min(walls):.2f} / {max(walls):.2f} s |\n"
        f"| seed time | {seed_s:.1f} s |\n| peak RSS (worker + driver process) | {peak:.0f} MB |\n"
        f"| peak RSS MariaDB | {max(r[5].peak['mariadb'] for r in rows):.0f} MB |\n"
        f"| Redis memory of live queue keys ({nkeys} keys) | {mem_mb:.1f} MiB |\n"
        f"| queue depths | {depths} |\n| ranges (chunk 25,000) | {-(-args.users // 25000)} |"
    )
    print(prof)
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
