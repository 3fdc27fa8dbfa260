"""Benchmark of the full queue rebuild (QueueRebuildWorkflow) on the real worker.

    .venv/bin/python bench/queue_rebuild.py [--users 50000] [--runs 3] [--profile-range 25000] [--chunk N]
        [--replica-url mysql+aiomysql://root@127.0.0.1:PORT/DB]

Starts a private MariaDB (row binlog, 512M buffer pool), a Temporal dev server (WAL), a fresh
PostgreSQL database ``bench_*`` (migrated) and a ``bench:*`` Redis prefix; seeds ``--users``
customers (3 claims, 4 requirements each) with devstack.seed; then runs the workflow on the
real worker (workers.worker.build_worker, in this process, with its rebuild pool) ``--runs`` times
and prints the cold run and the warm runs' median and range.
Run 1 is cold: the pool's processes start (and import the stack) with it and the phone normalisation
cache is empty; MariaDB's buffer pool is warm from the seed. Later runs are warm.

Per-phase times come from the workflow history (activity scheduled -> completed): plan, stage
(first range scheduled -> last range completed), swap, record; and, inside the ranges, the split
each range reports (StageRangeResult.seconds: replica, phones, dialler facts, placement, Redis
staging), summed over the ranges. CPU per run is read per process: the worker (this process), the
pool's processes, MariaDB, the Temporal dev server, and Redis (INFO; a shared server, so other
clients count too). Peak RSS is this process (worker + bench driver). Redis memory is MEMORY USAGE
(SAMPLES 0) of the live queue keys after the last run. ``--chunk`` sets the customers per range.

Then ``--profile-range`` customers (one range) are staged in this process by the activity's own code
(rebuild.stage_range) with its split timer, phone cache cold and warm, and under cProfile (top
functions by cumulative and own time). Everything is deleted at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench._stack import RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=3, help="rebuilds to run (1st cold, others warm)")
    p.add_argument("--profile-range", type=int, default=25_000, help="customers in the profiled range (0: skip)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--chunk", type=int, default=None, help="customers per range (default: RebuildInput's)")
    p.add_argument(
        "--replica-url",
        default=None,
        help="an already seeded replica (mysql+aiomysql://root@127.0.0.1:PORT/DB) instead of a private MariaDB "
        "seeded here: saves the seed (~1 min at 500k) when comparing commits; its server's CPU is read from the "
        "process listening on PORT. Not written to.",
    )
    return p.parse_args()


async def phases_from_history(handle, client) -> tuple[dict[str, float], dict[str, float]]:  # type: ignore[no-untyped-def]
    """Activity spans (first scheduled -> last completed, per activity type) and the stage ranges'
    own split (StageRangeResult.seconds, summed over the ranges: time spent in the pool's processes)."""
    from temporalio.api.enums.v1 import EventType

    from dialler.queues.rebuild import StageRangeResult

    history = await handle.fetch_history()
    scheduled: dict[int, tuple[str, float]] = {}
    spans: dict[str, list[float]] = {}
    split: dict[str, float] = {}
    for ev in history.events:
        t = ev.event_time.ToDatetime().timestamp()
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[ev.event_id] = (ev.activity_task_scheduled_event_attributes.activity_type.name, t)
        elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = ev.activity_task_completed_event_attributes
            name, t0 = scheduled[attrs.scheduled_event_id]
            lo_hi = spans.setdefault(name, [t0, t])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], t0), max(lo_hi[1], t)
            if name == "stage_range":
                (result,) = await client.data_converter.decode(attrs.result.payloads, [StageRangeResult])
                for phase, seconds in result.seconds.items():
                    split[phase] = split.get(phase, 0.0) + seconds
    return {name: hi - lo for name, (lo, hi) in spans.items()}, split


async def queue_memory(stores, engine) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    prefix = stores.settings.redis_prefix
    total = 0
    keys = [k async for k in stores.redis.scan_iter(match=f"{prefix}*", count=5000)]
    # Only the live queues (sorted sets and the side hashes), not lease keys or rebuild reports.
    keys = [k for k in keys if ":lease:" not in k and ":rebuild" not in k and ":stg:" not in k]
    for k in keys:
        total += int(await stores.redis.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0") or 0)
    return len(keys), total / 2**20


async def profile_range(worker_stores, engine, n: int) -> str:  # type: ignore[no-untyped-def]
    """One range staged in this process by the pool's own code (rebuild.stage_range, replica driver
    as in the pool): its split timer with a cold and a warm phone cache, then cProfile of a third
    pass (cold)."""
    from dialler import clock
    from dialler.runtime import Stores

    settings = worker_stores.settings
    stores = Stores.open(settings)
    try:
        return await _profile_range(stores, engine, n, now=clock.now(settings))
    finally:
        await stores.close()


async def _profile_range(stores, engine, n: int, *, now) -> str:  # type: ignore[no-untyped-def]
    from dialler.queues.phones import normalise_phone
    from dialler.queues.rebuild import StageRangeInput, stage_range

    phases = ("replica", "phones", "dialler_facts", "placement", "redis_staging")
    lines = [
        f"\n### Split timer, one range of {n:,} customers in one process, {stores.replica.url.drivername} "
        f"(load {load()})\n",
        "| pass | " + " | ".join(phases) + " | total | CPU |",
        "|---" * (len(phases) + 3) + "|",
    ]
    for label in ("cold", "warm"):
        if label == "cold":
            normalise_phone.cache_clear()
        run_id = f"bench-profile-{label}"
        await engine.begin_rebuild(run_id)
        cpu0 = time.process_time()
        result = await stage_range(stores, engine, StageRangeInput(run_id, 1, n), now=now)
        cpu = time.process_time() - cpu0
        await engine.discard_staging(run_id)
        t = result.seconds
        lines.append(
            f"| {label} phone cache | "
            + " | ".join(f"{t.get(p, 0) * 1000:.0f} ms" for p in phases)
            + f" | {sum(t.values()) * 1000:.0f} ms | {cpu * 1000:.0f} ms |"
        )

    normalise_phone.cache_clear()
    await engine.begin_rebuild("bench-profile-cp")
    prof = cProfile.Profile()
    prof.enable()
    await stage_range(stores, engine, StageRangeInput("bench-profile-cp", 1, n), now=now)
    prof.disable()
    await engine.discard_staging("bench-profile-cp")
    for sort in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(22)
        lines.append(
            f"\n<details><summary>cProfile sorted by {sort}</summary>\n\n```\n{buf.getvalue().strip()}\n```\n</details>"
        )
    return "\n".join(lines)


def listening_pid(url: str) -> int | None:
    from sqlalchemy.engine import make_url

    port = make_url(url).port or 3306
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def cpu_by_process(mariadb_pid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) so far of the worker (this process), the rebuild pool's processes,
    MariaDB and the Temporal dev server."""
    out = {"worker": sum(psutil.Process().cpu_times()[:2]), "pool": 0.0, "mariadb": 0.0, "temporal": 0.0}
    children = psutil.Process().children(recursive=True)
    if mariadb_pid is not None and mariadb_pid not in {c.pid for c in children}:
        with contextlib.suppress(psutil.Error):
            out["mariadb"] += sum(psutil.Process(mariadb_pid).cpu_times()[:2])
    for child in children:
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            kind = (
                "mariadb"
                if child.pid == mariadb_pid
                else "pool"
                if "spawn_main" in cmdline
                else "temporal"
                if "temporal" in child.name()
                else None
            )
            if kind:
                out[kind] += sum(child.cpu_times()[:2])
    return out


async def redis_cpu(stores) -> float:  # type: ignore[no-untyped-def]
    info = await stores.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def main() -> int:
    args = parse_args()
    from devstack.seed import seed_replica
    from dialler.integrations.twilio import TwilioTelephony
    from dialler.queues.rebuild import RebuildInput
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores
    from workers.worker import build_worker
    from workflows.queue_rebuild import QueueRebuildWorkflow

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=args.replica_url is None, temporal=True) as stack:
        if args.replica_url is None:
            t0 = time.perf_counter()
            report = await seed_replica(stack.replica_url, users=args.users, seed=args.seed, only_if_empty=False)
            seed_s = time.perf_counter() - t0
            print(
                f"seeded users={report.users:,} claims={report.claims:,} requirements={report.requirements:,} "
                f"in {seed_s:.1f} s (load {load()})",
                flush=True,
            )
        else:
            stack.replica_url, seed_s = args.replica_url, 0.0
            stack.mariadb_pid = listening_pid(args.replica_url)
            print(f"replica {args.replica_url} as seeded (MariaDB pid {stack.mariadb_pid})", flush=True)
        settings = stack.settings()
        stores = Stores.open(settings)
        telephony = TwilioTelephony(settings)
        client = stack.env.client
        engine = queue_engine(stores)
        rows = []
        rebuild_input = RebuildInput(trigger="cli", **({"chunk_size": args.chunk} if args.chunk else {}))
        try:
            async with build_worker(client, stores, telephony):
                for i in range(args.runs):
                    wf_id = f"queue-rebuild-bench-{stack.unique}-{i}"
                    cpu0, redis0 = cpu_by_process(stack.mariadb_pid), await redis_cpu(stores)
                    with RssSampler({"bench": __import__("os").getpid(), "mariadb": stack.mariadb_pid}) as s:
                        t0 = time.perf_counter()
                        handle = await client.start_workflow(
                            QueueRebuildWorkflow.run,
                            rebuild_input,
                            id=wf_id,
                            task_queue=settings.temporal_task_queue,
                        )
                        result = await handle.result()
                        wall = time.perf_counter() - t0
                    cpu = {k: v - cpu0[k] for k, v in cpu_by_process(stack.mariadb_pid).items()}
                    cpu["redis"] = await redis_cpu(stores) - redis0
                    phases, split = await phases_from_history(handle, client)
                    queued = sum(result.counts.values())
                    rows.append((i, wall, phases, queued, result, s, load(), split, cpu))
                    print(
                        f"run {i + 1} ({'cold' if i == 0 else 'warm'}): {wall:.2f} s, queued {queued:,}, "
                        f"phases {', '.join(f'{k}={v:.2f}' for k, v in phases.items())}, "
                        f"range split {', '.join(f'{k}={v:.2f}' for k, v in split.items())}, load {load()}",
                        flush=True,
                    )
                pool_rss = ", ".join(
                    f"{p.memory_info().rss / 2**20:.0f} MB"
                    for p in psutil.Process().children(recursive=True)
                    if "spawn_main" in " ".join(p.cmdline())
                )
            nkeys, mem_mb = await queue_memory(stores, engine)
            depths = await engine.depths()
            prof = (
                await profile_range(stores, engine, min(args.profile_range, args.users)) if args.profile_range else ""
            )
        finally:
            await telephony.aclose()
            await stores.close()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls = [r[1] for r in rows]
    print(f"\n## Queue rebuild, {args.users:,} users ({3 * args.users:,} claims, {4 * args.users:,} requirements)\n")
    print(
        "| run | wall (start→result) | plan | stage ranges | swap | recompute | record | queued | not queued "
        "| CPU: worker | pool | MariaDB | Redis | Temporal | load (1/5/15) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, wall, ph, queued, res, _, ld, _, cpu in rows:
        print(
            f"| {i + 1} {'cold' if i == 0 else 'warm'} | {wall:.2f} s | {ph.get('plan_rebuild', 0):.2f} s | "
            f"{ph.get('stage_range', 0):.2f} s | {ph.get('swap_rebuild', 0):.2f} s | "
            f"{ph.get('recompute_users', 0):.2f} s | {ph.get('record_rebuild', 0):.2f} s | {queued:,} | "
            f"{sum(res.not_queued.values()):,} | {cpu['worker']:.1f} s | {cpu['pool']:.1f} s | "
            f"{cpu['mariadb']:.1f} s | {cpu['redis']:.1f} s | {cpu['temporal']:.1f} s | {ld} |"
        )
    phases = ("replica", "phones", "dialler_facts", "placement", "redis_staging")
    print(
        "\nInside the stage ranges (StageRangeResult.seconds summed over the ranges: wall time in the pool's "
        "processes, which run side by side):\n"
    )
    print("| run | " + " | ".join(phases) + " |")
    print("|---" * (len(phases) + 1) + "|")
    for row in rows:
        split = row[7]
        print(f"| {row[0] + 1} | " + " | ".join(f"{split.get(p, 0):.2f} s" for p in phases) + " |")
    warm = walls[1:]
    print(
        f"\n**cold** (run 1): {walls[0]:.2f} s; **warm** (runs 2-{len(walls)}): "
        + (f"median {percentile(warm, 50):.2f} s, range {min(warm):.2f}-{max(warm):.2f} s" if warm else "none")
        + f"; load at the end {load()}"
    )
    print(
        f"\n| metric | value |\n|---|---|\n| p50 wall over {len(walls)} runs | {percentile(walls, 50):.2f} s |\n"
        f"| min / max wall | {min(walls):.2f} / {max(walls):.2f} s |\n"
        f"| seed time | {seed_s:.1f} s |\n| peak RSS (worker + driver process) | {peak:.0f} MB |\n"
        f"| RSS of the rebuild pool's processes after the runs | {pool_rss} |\n"
        f"| peak RSS MariaDB | {max(r[5].peak['mariadb'] for r in rows):.0f} MB |\n"
        f"| Redis memory of live queue keys ({nkeys} keys) | {mem_mb:.1f} MiB |\n"
        f"| queue depths | {depths} |\n"
        f"| ranges (chunk {rebuild_input.chunk_size:,}) | {-(-args.users // rebuild_input.chunk_size)} |"
    )
    print(prof)
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
