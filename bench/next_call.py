"""Benchmark of the Redis queue engine: next_call latency under concurrent agents, memory, swap time.

    .venv/bin/python bench/next_call.py [--customers 100000] [--callers 100] [--assignments 100000]
        [--processes 2] [--rate 200] [--paced-seconds 20] [--big-customers 500000]
        [--redis-url redis://127.0.0.1:6379/0]

Each caller is one agent (three queue mixes, 30 % trained for vulnerable customers) looping
next_call -> release(requeue=None). Callers are asyncio tasks spread over ``--processes`` client
processes, as agents are spread over API replicas in production: one Python process cannot drive
100 closed-loop callers without its own event loop becoming the queue being measured.

1. Uncontended latency (1 caller) and the Redis-side cost per next_call / release (INFO commandstats).
2. Paced: the callers together issue ``--rate`` next_calls per second for ``--paced-seconds``: latency
   at a load far above a real floor (100 agents make a few calls per minute each), but below
   saturation of this machine.
3. Closed loop on ``--customers`` fresh customers until ``--assignments`` leases: saturation
   throughput and latency. Released without requeue, a customer can never come back, so every user id
   assigned twice is a double lease (must be 0).
4. ``--big-customers`` (10x the reference dataset): Redis memory of the queue keys (MEMORY USAGE
   SAMPLES 0), then a full rebuild (2 % rescored, 1 % removed, 1 % added; 100 customers leased and
   5,000 changed by "CDC" while it runs) staged and swapped while a separate process PINGs Redis
   every ms: how long Redis was blocked for everybody else.

Seed data: 10 % callbacks (half reserved for their booking agent for 2 s), 50 % unsigned,
40 % outstanding; 5 % vulnerable; 2 % gated by a not_before up to 3 s ahead.
Prints a markdown table. Every key is deleted at exit (unique prefix, SCAN + UNLINK).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import redis as sync_redis
from redis.asyncio import Redis

from dialler.queues.engine import QueueEngine, QueueEntry
from dialler.queues.keys import QUEUES

AGENT_MIXES = (list(QUEUES), ["callbacks", "unsigned"], ["callbacks", "outstanding_requests"])
LEASE_TTL_S = 300
SPAWN = mp.get_context("spawn")


def install_uvloop() -> None:
    try:  # shipped with uvicorn[standard]; roughly halves the client-side cost per call
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def make_entries(n: int, *, first_id: int, now: float, agents: int, rng: random.Random) -> list[QueueEntry]:
    entries = []
    for i in range(n):
        r = rng.random()
        queue = "callbacks" if r < 0.10 else "unsigned" if r < 0.60 else "outstanding_requests"
        reserved = queue == "callbacks" and rng.random() < 0.5
        entries.append(
            QueueEntry(
                user_id=first_id + i,
                queue=queue,
                score=round(rng.uniform(0, 1_000_000), 3),
                not_before=now + rng.uniform(0, 3) if rng.random() < 0.02 else None,
                vulnerable=rng.random() < 0.05,
                reserved_for_agent=rng.randrange(agents) if reserved else None,
                reserved_until=now + 2 if reserved else None,
            )
        )
    return entries


def pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100 * (len(sorted_ms) - 1))))]


def lat_row(latencies_ms: list[float]) -> str:
    lat = sorted(latencies_ms)
    return f"{pct(lat, 50):.2f} / {pct(lat, 99):.2f} / {lat[-1]:.2f} ms"


# --------------------------------------------------------------------------- callers


@dataclass(frozen=True)
class CallerSpec:
    redis_url: str
    prefix: str
    first_agent: int
    callers: int
    assignments: int
    rate: float = 0.0  # next_calls per second for this process's callers together; 0 = closed loop
    seconds: float = 0.0


@dataclass
class RunResult:
    latencies_ms: list[float] = field(default_factory=list)
    assigned: list[int] = field(default_factory=list)
    empty_calls: int = 0
    elapsed_s: float = 0.0

    def merge(self, other: RunResult) -> None:
        self.latencies_ms += other.latencies_ms
        self.assigned += other.assigned
        self.empty_calls += other.empty_calls
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)

    def double_leases(self) -> int:
        return sum(n - 1 for n in Counter(self.assigned).values() if n > 1)


async def run_callers(engine: QueueEngine, spec: CallerSpec) -> RunResult:
    result = RunResult()
    taken = [0]  # one event loop: plain increments are safe
    deadline = time.perf_counter() + spec.seconds if spec.rate else float("inf")
    interval = spec.callers / spec.rate if spec.rate else 0.0

    async def caller(agent_id: int) -> None:
        queues = AGENT_MIXES[agent_id % len(AGENT_MIXES)]
        trained = agent_id % 10 < 3
        idle_since: float | None = None
        next_at = time.perf_counter() + random.random() * interval
        while taken[0] < spec.assignments and time.perf_counter() < deadline:
            if spec.rate:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            t = time.perf_counter()
            lease = await engine.next_call(
                agent_id=agent_id, queues=queues, trained_vulnerable=trained, now=time.time()
            )
            result.latencies_ms.append((time.perf_counter() - t) * 1000)
            if lease is None:
                result.empty_calls += 1
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 5:  # nothing left that this agent may take
                    return
                if not spec.rate:
                    await asyncio.sleep(0.005)
                continue
            idle_since = None
            result.assigned.append(lease.user_id)
            taken[0] += 1
            await engine.release(user_id=lease.user_id, token=lease.token, requeue=None, now=time.time())

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(spec.first_agent + a) for a in range(spec.callers)))
    result.elapsed_s = time.perf_counter() - t0
    return result


async def _callers_in_process(spec: CallerSpec) -> RunResult:
    client = Redis.from_url(spec.redis_url, decode_responses=True, max_connections=spec.callers + 5, socket_timeout=60)
    try:
        return await run_callers(QueueEngine(client, prefix=spec.prefix, lease_ttl_s=LEASE_TTL_S), spec)
    finally:
        await client.aclose()


def callers_process(spec: CallerSpec) -> RunResult:
    install_uvloop()
    return asyncio.run(_callers_in_process(spec))


async def run_spread(args: argparse.Namespace, prefix: str, *, assignments: int, rate: float = 0.0) -> RunResult:
    """Split --callers over --processes processes (distinct agent ids) and merge their results."""
    procs = max(1, min(args.processes, args.callers))
    per = [args.callers // procs + (1 if i < args.callers % procs else 0) for i in range(procs)]
    specs, first = [], 0
    for n in per:
        share = n / args.callers
        specs.append(
            CallerSpec(args.redis_url, prefix, first, n, round(assignments * share), rate * share, args.paced_seconds)
        )
        first += n
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(procs, mp_context=SPAWN) as pool:
        parts = await asyncio.gather(*(loop.run_in_executor(pool, callers_process, s) for s in specs))
    merged = RunResult()
    for part in parts:
        merged.merge(part)
    return merged


# --------------------------------------------------------------------------- helpers


async def server_cost(client: Redis, engine: QueueEngine, calls: int) -> tuple[float, float]:
    """Redis-side µs per next_call and per release (INFO commandstats; approximate on a shared server)."""

    async def evalsha() -> tuple[int, float]:
        s = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        return int(s.get("calls", 0)), float(s.get("usec", 0))

    c0 = await evalsha()
    leases = []
    for agent in range(calls):
        lease = await engine.next_call(
            agent_id=50_000 + agent, queues=list(QUEUES), trained_vulnerable=True, now=time.time()
        )
        if lease is not None:
            leases.append(lease)
    c1 = await evalsha()
    for lease in leases:
        await engine.release(user_id=lease.user_id, token=lease.token, requeue=None, now=time.time())
    c2 = await evalsha()
    return (c1[1] - c0[1]) / max(c1[0] - c0[0], 1), (c2[1] - c1[1]) / max(c2[0] - c1[0], 1)


async def unlink_prefix(client: Redis, prefix: str) -> None:
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def key_memory(client: Redis, prefix: str) -> dict[str, int]:
    usage: dict[str, int] = {}
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        usage[name.split(":{q}:", 1)[1]] = int(await client.memory_usage(key, samples=0) or 0)
    return usage


async def used_memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def seed(engine: QueueEngine, entries: list[QueueEntry], stage_run: str | None = None) -> float:
    """A few batches in flight at once, as parallel CDC-apply / rebuild fan-out activities would."""
    t = time.perf_counter()
    gate = asyncio.Semaphore(4)

    async def one(part: list[QueueEntry]) -> None:
        async with gate:
            await (engine.stage_many(stage_run, part) if stage_run else engine.upsert_many(part))

    step = 10_000
    await asyncio.gather(*(one(entries[i : i + step]) for i in range(0, len(entries), step)))
    return time.perf_counter() - t


def ping_probe(redis_url: str, stop: Event, out: Connection) -> None:
    """In its own process: PING every ms until stopped; a running script delays every PING."""
    client = sync_redis.Redis.from_url(redis_url)
    samples: list[tuple[float, float]] = []  # (sent at, latency ms); perf_counter is system-wide here
    while not stop.is_set():
        t = time.perf_counter()
        client.ping()
        samples.append((t, (time.perf_counter() - t) * 1000))
        time.sleep(0.001)
    out.send(samples)
    client.close()


# --------------------------------------------------------------------------- runs


async def latency_runs(
    client: Redis, args: argparse.Namespace, prefix: str, rng: random.Random
) -> list[tuple[str, str]]:
    engine = QueueEngine(client, prefix=prefix, lease_ttl_s=LEASE_TTL_S)
    await seed(engine, make_entries(args.customers, first_id=1, now=time.time(), agents=args.callers, rng=rng))
    single = await run_callers(engine, CallerSpec(args.redis_url, prefix, 0, 1, 2000))
    nc_us, rel_us = await server_cost(client, engine, 1000)
    paced = await run_spread(args, prefix, assignments=10**9, rate=args.rate)
    await unlink_prefix(client, prefix)
    return [
        ("next_call latency, 1 caller: p50 / p99 / max", lat_row(single.latencies_ms)),
        ("Redis server time per next_call / per release", f"{nc_us:.0f} / {rel_us:.0f} µs"),
        (
            f"next_call latency, {args.callers} callers paced at {args.rate:,.0f} calls/s in total"
            f" ({len(paced.latencies_ms):,} calls in {paced.elapsed_s:.0f} s): p50 / p99 / max",
            lat_row(paced.latencies_ms),
        ),
        ("double leases, 1-caller and paced runs", f"{single.double_leases() + paced.double_leases()}"),
    ]


async def closed_loop(
    client: Redis, args: argparse.Namespace, prefix: str, rng: random.Random
) -> list[tuple[str, str]]:
    engine = QueueEngine(client, prefix=prefix, lease_ttl_s=LEASE_TTL_S)
    entries = make_entries(args.customers, first_id=1, now=time.time(), agents=args.callers, rng=rng)
    seed_s = await seed(engine, entries)
    res = await run_spread(args, prefix, assignments=args.assignments)
    depths = await engine.depths()
    leases_left = await client.zcard(engine.keys.lease_expiry)
    await unlink_prefix(client, prefix)
    n = len(res.assigned)
    return [
        (
            f"seed {args.customers:,} customers (upsert_many)",
            f"{seed_s:.2f} s ({args.customers / seed_s:,.0f}/s)",
        ),
        (
            f"next_call latency, {args.callers} callers closed loop: p50 / p99 / max",
            lat_row(res.latencies_ms),
        ),
        (
            f"assignments, {args.callers} callers closed loop",
            f"{n:,} in {res.elapsed_s:.1f} s = {n / res.elapsed_s:,.0f}/s (next_call + release pairs)",
        ),
        ("next_call calls that found nobody eligible (queue tail)", f"{res.empty_calls:,}"),
        ("double leases (a user id assigned twice), closed loop", f"{res.double_leases()}"),
        ("left after the closed loop: queued / leased", f"{sum(depths.values()):,} / {leases_left}"),
    ]


async def big_run(client: Redis, args: argparse.Namespace, prefix: str, rng: random.Random) -> list[tuple[str, str]]:
    n = args.big_customers
    rows: list[tuple[str, str]] = []
    engine = QueueEngine(client, prefix=prefix, lease_ttl_s=LEASE_TTL_S)
    now = time.time()
    mem0 = await used_memory(client)
    entries = make_entries(n, first_id=1, now=now, agents=args.callers, rng=rng)
    seed_s = await seed(engine, entries)
    mem1 = await used_memory(client)
    usage = await key_memory(client, prefix)
    total = sum(usage.values())
    rows.append((f"seed {n:,} customers (upsert_many)", f"{seed_s:.2f} s ({n / seed_s:,.0f}/s)"))
    rows.append(
        (
            f"Redis memory of the queue keys, {n:,} customers (MEMORY USAGE)",
            f"{total / 2**20:.1f} MiB ({total / n:.0f} B/customer)",
        )
    )
    rows += [(f"  `{key}`", f"{size / 2**20:.1f} MiB") for key, size in sorted(usage.items())]
    rows.append(("INFO used_memory growth while seeding", f"{(mem1 - mem0) / 2**20:.1f} MiB"))

    staged: list[QueueEntry] = []
    for e in entries:
        r = rng.random()
        if r < 0.01:
            continue  # removed
        if r < 0.03:
            e = QueueEntry(
                e.user_id,
                e.queue,
                e.score + 1,
                e.not_before,
                e.vulnerable,
                e.reserved_for_agent,
                e.reserved_until,
            )
        staged.append(e)
    staged += make_entries(n // 100, first_id=n + 1, now=now, agents=args.callers, rng=rng)
    run_id = "bench-run"
    await engine.begin_rebuild(run_id)
    # While the rebuild runs: 100 agents on calls (leased) and 5,000 CDC changes (dirty users).
    for agent in range(100):
        await engine.next_call(agent_id=agent, queues=list(QUEUES), trained_vulnerable=True, now=now + 10)
    await engine.upsert_many([QueueEntry(u, "unsigned", float(u)) for u in range(1, n, n // 5000)])
    stage_s = await seed(engine, staged, stage_run=run_id)
    mem2 = await used_memory(client)
    rows.append((f"stage {len(staged):,} entries (stage_many)", f"{stage_s:.2f} s"))
    rows.append(("peak used_memory growth during the rebuild (live + staging)", f"{(mem2 - mem0) / 2**20:.1f} MiB"))

    # Time the atomic script apart from the chunked pre-pass by wrapping it (bench-only).
    swap_script = engine._swap
    atomic_ms: list[float] = []

    atomic_window: list[float] = []

    async def timed_swap(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await swap_script(*a, **kw)
        finally:
            atomic_ms.append((time.perf_counter() - t) * 1000)
            atomic_window[:] = [t, time.perf_counter()]

    engine._swap = timed_swap  # type: ignore[assignment]
    stop = SPAWN.Event()
    receive, send = SPAWN.Pipe(duplex=False)
    probe = SPAWN.Process(target=ping_probe, args=(args.redis_url, stop, send))
    probe.start()
    await asyncio.sleep(3.0)  # the probe process imports and connects, then ~2 s of baseline
    t = time.perf_counter()
    drift = await engine.swap(run_id, now=time.time())
    t_end = time.perf_counter()
    total_ms = (t_end - t) * 1000
    await asyncio.sleep(0.1)
    stop.set()
    samples: list[tuple[float, float]] = await asyncio.to_thread(receive.recv)
    probe.join()
    baseline = [ms for at, ms in samples if t - 2.0 <= at < t]
    during = [ms for at, ms in samples if t <= at <= t_end]
    near_atomic = [ms for at, ms in samples if atomic_window[0] - 0.005 <= at <= atomic_window[1]]
    sums = [sum(getattr(q, f) for q in drift.queues.values()) for f in ("added", "removed", "rescored")]
    rows += [
        (f"swap {n:,}: drift pre-pass (chunked) + atomic swap, total", f"{total_ms:,.0f} ms"),
        ("swap: atomic script alone (client round trip)", f"{atomic_ms[0]:.1f} ms"),
        (
            "Redis PING from another process, 2 s before the swap (baseline): p50 / p99 / max",
            f"{lat_row(baseline)} ({len(baseline):,} pings)",
        ),
        (
            "Redis PING from another process during pre-pass + swap: p50 / p99 / max",
            f"{lat_row(during)} ({len(during):,} pings)",
        ),
        ("Redis PING overlapping the atomic script: max", f"{max(near_atomic, default=0.0):.2f} ms"),
        ("drift found (added / removed / rescored, all queues)", " / ".join(f"{x:,}" for x in sums)),
        (
            "users the swap handled one by one: dirty / leased",
            f"{len(drift.dirty_user_ids):,} / {len(drift.leased_user_ids):,}",
        ),
    ]
    await asyncio.sleep(0.5)  # let the background free of the old structures finish
    mem3 = await used_memory(client)
    rows.append(("used_memory growth after the swap (old live freed by UNLINK)", f"{(mem3 - mem0) / 2**20:.1f} MiB"))
    await unlink_prefix(client, prefix)
    return rows


async def main(args: argparse.Namespace) -> None:
    # A generous read timeout: on a loaded machine a batch reply can exceed redis-py's default 5 s.
    client = Redis.from_url(args.redis_url, decode_responses=True, socket_timeout=60)
    tag = uuid.uuid4().hex[:10]
    prefixes = [f"bench-nextcall-{tag}-{part}" for part in ("paced", "loop", "big")]
    rng = random.Random(42)
    rows: list[tuple[str, str]] = []
    try:
        rows += await latency_runs(client, args, prefixes[0], rng)
        rows += await closed_loop(client, args, prefixes[1], rng)
        if args.big_customers:
            rows += await big_run(client, args, prefixes[2], rng)
    finally:
        for _ in range(2):  # a second pass catches writes still queued when a run failed
            for prefix in prefixes:
                await unlink_prefix(client, prefix)
            await asyncio.sleep(1)
        await client.aclose()
    print(f"callers spread over {args.processes} client process(es)\n")
    print("| measure | value |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Queue engine benchmark (see the module docstring).")
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--callers", type=int, default=100)
    p.add_argument("--assignments", type=int, default=100_000)
    p.add_argument("--processes", type=int, default=2, help="client processes the callers are spread over")
    p.add_argument("--rate", type=float, default=200.0, help="next_call/s of all callers in the paced run")
    p.add_argument("--paced-seconds", type=float, default=20.0)
    p.add_argument("--big-customers", type=int, default=500_000, help="0 skips the memory/swap part")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return p.parse_args()


if __name__ == "__main__":
    install_uvloop()
    asyncio.run(main(parse_args()))
