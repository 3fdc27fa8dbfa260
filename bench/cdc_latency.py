"""Benchmark of change data capture at scale: commit on the replica -> customer re-placed in the queues.

    .venv/bin/python bench/cdc_latency.py [--repeat 3] [--rate 5000] [--seconds 60] [--bulk-rows 100000]
    .venv/bin/python bench/cdc_latency.py --quick      # small sizes, one repeat: the test's mode

Private MariaDB (row binlog; ``--users`` customers seeded, 3 claims each), moto SQS, Temporal dev
server (WAL), ``bench_*`` PostgreSQL, ``bench:*`` Redis. Four cases, each run ``--repeat`` times
(median and range reported), the load averages printed before and after each:

- **apply**: the consumer's apply path alone on one core, in this process: ``--apply-records``
  pre-made change records (the publisher's JSON: half ``users``, a quarter each ``claims`` and
  ``claim_requirements``, some customers several times) parsed and applied
  (``dialler.cdc.apply.apply_records``) in batches of ``--apply-batch``; records/s and CPU per
  record, and the wall time per phase of the apply (``--profile`` adds a cProfile of the case).
- **decode**: the raw binlog decode rate of ``mysql-replication`` (``BinLogStreamReader`` with the
  publisher's options, rows counted, nothing else) over the binlog the two cases below wrote, and the
  publisher's own reader over the same range (decode + DMS record + JSON: what it can feed SQS).
- **sustained**: ``--writers`` connections commit one UPDATE of one customer per transaction (the
  signature toggled: every change moves the customer between queues, journey 3), paced to
  ``--rate`` per second for ``--seconds``, through the two product processes: the publisher
  (``python -m workers.publisher``, binlog -> SQS) and the real worker with CdcIngestWorkflow
  (``bench/_worker.py --cdc-ingest``, SQS -> Redis queues).
- **bulk**: a nightly job in the main app: ``--bulk-rows`` claims changed by ``--bulk-statements``
  multi-row UPDATE statements (status flipped to or from ``withdrawn``: customers leave or re-enter
  the queues), each its own transaction; the time from the last commit until every change is applied.

Commit-to-queue latency is the product's own measure (``dialler.cdc.metrics``: now - commit time of
each fresh record once the recompute has written Redis). Every record is counted by the histogram
(exact: the share within 1 s and within 10 s); the percentiles come from the recent-latency list
sampled every 0.1 s (its coverage is printed). After every case the bench checks correctness: every
change applied (records counted == rows changed), and each touched customer's queue in Redis equals
a fresh placement from the replica's rows. CPU and peak RSS per process are reported per case.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402
from bench.api_next_call import api_env  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and one repeat (tests/bench)")
    p.add_argument("--repeat", type=int, default=None, help="runs of each case (default 3; 1 with --quick)")
    p.add_argument("--users", type=int, default=None, help="customers seeded (default 40,000)")
    p.add_argument("--apply-records", type=int, default=None, help="records per apply run (default 50,000)")
    p.add_argument("--apply-batch", type=int, default=5_000, help="records per apply call")
    p.add_argument("--rate", type=float, default=None, help="sustained changes/s (default 5,000)")
    p.add_argument("--seconds", type=float, default=None, help="sustained duration (default 60)")
    p.add_argument("--writers", type=int, default=16, help="writer connections of the sustained case")
    p.add_argument("--bulk-rows", type=int, default=None, help="claims changed by the bulk case (default 100,000)")
    p.add_argument("--bulk-statements", type=int, default=4)
    p.add_argument("--decode-rows", type=int, default=50_000, help="rows decoded per range and run, at most")
    p.add_argument("--drain-timeout", type=float, default=180)
    p.add_argument("--cases", default="apply,direct,sustained,bulk,decode", help="comma-separated subset")
    p.add_argument("--profile", action="store_true", help="cProfile the apply case (top functions printed)")
    p.add_argument("--worker-profile", default=None, help="write a cProfile of the worker process here")
    p.add_argument("--ring", type=float, default=0.2)
    p.add_argument("--talk", type=float, default=0.5)
    args = p.parse_args(argv)
    full = dict(repeat=3, users=40_000, apply_records=50_000, rate=5_000.0, seconds=60.0, bulk_rows=100_000)
    quick = dict(repeat=1, users=2_000, apply_records=2_000, rate=200.0, seconds=5.0, bulk_rows=3_000)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.bulk_rows > 3 * args.users:
        p.error(f"--bulk-rows {args.bulk_rows} needs at least {args.bulk_rows // 3 + 1} --users (3 claims each)")
    return args


@dataclass
class Run:
    """One run of one case: the numbers the tables show."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""


def spread(runs: list[Run], key: str) -> tuple[float, float, float]:
    values = [r.values[key] for r in runs if key in r.values]
    if not values:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(values), min(values), max(values)


def fmt(runs: list[Run], key: str, unit: str = "", digits: int = 2) -> str:
    med, lo, hi = spread(runs, key)
    if len(runs) == 1:
        return f"{med:,.{digits}f}{unit}"
    return f"**{med:,.{digits}f}{unit}** ({lo:,.{digits}f}–{hi:,.{digits}f})"


# --- correctness -------------------------------------------------------------------------------------


async def placement_mismatches(stores: Any, user_ids: list[int]) -> list[int]:
    """Customers whose queue in Redis is not where a fresh placement from the replica puts them."""
    from dialler.queues.keys import QUEUES
    from dialler.queues.rebuild import decisions_for
    from dialler.queues.runtime import queue_engine

    engine = queue_engine(stores)
    live: dict[int, str] = {}
    for queue in QUEUES:
        members = await stores.redis.zrange(engine.keys.queue(queue), 0, -1)
        live.update({int(m): queue for m in members})
    wanted = set(user_ids)
    decisions = await decisions_for(
        replica=stores.replica,
        postgres=stores.postgres,
        now=datetime.now(UTC),
        settings=stores.settings,
        user_ids=sorted(wanted),
    )
    expected = {d.user_id: (d.entry.queue if d.entry else None) for d in decisions}
    return sorted(u for u in wanted if live.get(u) != expected.get(u))


# --- case (a): apply on one core ----------------------------------------------------------------------


async def apply_case(args: argparse.Namespace, stores: Any, repeat: int, profile: bool = False) -> Run:
    from sqlalchemy import text

    from dialler.cdc.apply import apply_records, check
    from dialler.cdc.records import ChangeRecord, parse_record, to_dms_record, without_values
    from dialler.queues.rebuild import Laps
    from dialler.queues.runtime import queue_engine

    rng = random.Random(100 + repeat)
    n = args.apply_records
    async with stores.replica.connect() as conn:
        users = (await conn.execute(text("SELECT id, updated_at FROM users"))).all()
        claims = (await conn.execute(text("SELECT id, user_id, updated_at FROM claims"))).all()
        reqs = (await conn.execute(text("SELECT id, claim_id, updated_at FROM claim_requirements"))).all()

    now = datetime.now(UTC)
    bodies: list[str] = []
    touched: set[int] = set()
    owner = {c.id: c.user_id for c in claims}
    batch: list[str] = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.5:
            row = rng.choice(users)
            table, data = "users", {"id": row.id, "updated_at": row.updated_at}
            touched.add(row.id)
        elif kind < 0.75:
            row = rng.choice(claims)
            table, data = "claims", {"id": row.id, "user_id": row.user_id, "updated_at": row.updated_at}
            touched.add(row.user_id)
        else:
            row = rng.choice(reqs)
            table, data = "claim_requirements", {"id": row.id, "claim_id": row.claim_id, "updated_at": row.updated_at}
            touched.add(owner[row.claim_id])
        record = to_dms_record(
            schema="claims_bench",
            table=table,
            operation="update",
            data=data,
            committed_at=now,
            log_file="binlog.999999",
            log_pos=(repeat + 1) * 10_000_000 + i,  # newer than any earlier run's: every record is fresh
        )
        batch.append(json.dumps(without_values(record), separators=(",", ":")))
        if len(batch) >= 1000 or i == n - 1:  # the publisher's message size
            bodies.append("[" + ",".join(batch) + "]")
            batch = []

    engine = queue_engine(stores)
    laps = Laps()
    prof = cProfile.Profile() if profile else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    applied = customers = 0
    pending: list[ChangeRecord] = []

    async def flush() -> None:
        nonlocal applied, customers
        result = await apply_records(stores, engine, pending, laps)
        applied += len(result.fresh)
        customers += len(result.user_ids)
        pending.clear()

    laps("idle")
    for body in bodies:
        for raw in json.loads(body):
            parsed = parse_record(raw, index=0)
            if isinstance(parsed, ChangeRecord):
                check([parsed])
                pending.append(parsed)
        laps("parse")
        if len(pending) >= args.apply_batch:
            await flush()
    if pending:
        await flush()
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    laps.seconds.pop("idle", None)
    run = Run()
    run.values = {
        "records_per_s": n / wall,
        "cpu_per_1k": cpu / n * 1000,
        "wall_s": wall,
        "cpu_share": cpu / wall,
        "customers": customers,
    }
    run.notes = {"laps": laps.seconds, "applied": applied}
    if applied != n:
        raise AssertionError(f"apply: {applied} of {n} records applied")
    wrong = await placement_mismatches(stores, sorted(touched))
    run.notes["mismatches"] = len(wrong)
    if wrong:
        raise AssertionError(f"apply: {len(wrong)} customers misplaced, e.g. {wrong[:5]}")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        run.notes["profile"] = out.getvalue()
    return run


# --- binlog positions and the decode case -------------------------------------------------------------


async def binlog_end(stores: Any) -> tuple[str, int]:
    from sqlalchemy import text

    async with stores.replica.connect() as conn:
        row = (await conn.execute(text("SHOW MASTER STATUS"))).one()
    return str(row[0]), int(row[1])


def decode_range(
    settings: Any, start: tuple[str, int], end: tuple[str, int], limit: int
) -> tuple[int, int, float, tuple[str, int]]:
    """(rows, events, seconds, where it stopped): BinLogStreamReader alone, as the publisher configures
    it, from ``start`` to ``end`` or ``limit`` rows."""
    from pymysqlreplication.event import RotateEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    from dialler.cdc.publisher.common import BinlogPosition
    from dialler.cdc.publisher.reader import open_binlog

    stream = open_binlog(
        settings.replica_url,
        server_id=4_000_000_000 - os.getpid() % 1000,
        schema=settings.replica_url.rsplit("/", 1)[1],
        start=BinlogPosition(*start),
    )
    rows = events = 0
    stopped = start
    t0 = time.perf_counter()
    try:
        for event in stream:
            events += 1
            if isinstance(event, UpdateRowsEvent | WriteRowsEvent | DeleteRowsEvent):
                rows += len(event.rows)
            if isinstance(event, RotateEvent):
                continue
            stopped = (stream.log_file, event.packet.log_pos)
            if stopped >= end or rows >= limit:
                break
    finally:
        stream.close()
    return rows, events, time.perf_counter() - t0, min(stopped, end)


def reader_range(
    settings: Any, start: tuple[str, int], end: tuple[str, int], prof: cProfile.Profile | None = None
) -> tuple[int, float]:
    """(records, seconds): the publisher's own reader thread (decode + DMS record + JSON)."""
    from dialler.cdc.publisher import BinlogPosition, PublisherOptions
    from dialler.cdc.publisher.reader import _BinlogReader, _Budget, _Chunk

    options = PublisherOptions.from_settings(settings, checkpoint_name=f"bench-decode-{os.getpid()}")
    target = BinlogPosition(*end)
    count = [0]
    done = threading.Event()
    reader: _BinlogReader

    def deliver(item: object) -> None:
        if isinstance(item, _Chunk):
            count[0] += len(item.records)
            budget.release(item.nbytes)
            if item.end is not None and item.end >= target:
                done.set()
                reader.stop_requested.set()

    budget = _Budget(1 << 40)
    reader = _BinlogReader(
        replica_url=settings.replica_url,
        schema=settings.replica_url.rsplit("/", 1)[1],
        start=BinlogPosition(*start),
        options=options,
        budget=budget,
        deliver=deliver,
        on_reconnect=lambda: None,
    )
    if prof is not None:
        body = reader.run

        def profiled() -> None:  # cProfile sees the thread it is enabled on only
            prof.enable()
            try:
                body()
            finally:
                prof.disable()

        reader.run = profiled  # type: ignore[method-assign]
    t0 = time.perf_counter()
    reader.start()
    done.wait(600)
    elapsed = time.perf_counter() - t0
    reader.stop_requested.set()
    reader.join(10)
    return count[0], elapsed


async def decode_case(
    settings: Any, ranges: dict[str, tuple[tuple[str, int], tuple[str, int]]], limit: int, profile: bool = False
) -> Run:
    run = Run()
    for name, (start, end) in ranges.items():
        rows, events, seconds, end = await asyncio.to_thread(decode_range, settings, start, end, limit)
        run.values[f"{name}_rows_per_s"] = rows / seconds
        run.values[f"{name}_events_per_s"] = events / seconds
        run.notes[f"{name}_rows"] = rows
        prof = cProfile.Profile() if profile else None  # (the rate of a profiled run is not comparable)
        records, seconds = await asyncio.to_thread(reader_range, settings, start, end, prof)
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
            run.notes[f"{name}_profile"] = out.getvalue()
        run.values[f"{name}_reader_per_s"] = records / seconds
        # At least: the reader hands a transaction over whole, and the row limit may stop inside one.
        if records < rows:
            raise AssertionError(f"decode {name}: the publisher's reader made {records} records of {rows} rows")
    return run


# --- cases (c) and (d): through the product processes -------------------------------------------------


class Observer:
    """The consumer's counters in Redis, polled every 0.1 s: records applied, the histogram, samples."""

    def __init__(self, stores: Any) -> None:
        from dialler.cdc import metrics

        self.redis = stores.redis
        self.key = metrics.key(stores.settings.redis_prefix)
        self.recent = metrics.recent_key(stores.settings.redis_prefix)
        self.base: dict[str, float] = {}
        self.fields: dict[str, float] = {}
        self.samples: list[float] = []
        self.depths: list[int] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _fields(self) -> dict[str, float]:
        raw = await self.redis.hgetall(self.key)
        return {k: float(v) for k, v in raw.items() if k.startswith("le_") or k in ("records_total", "invalid_total")}

    @property
    def applied(self) -> int:
        return int(self.fields.get("records_total", 0) - self.base.get("records_total", 0))

    def count(self, name: str) -> int:
        return int(self.fields.get(name, 0) - self.base.get(name, 0))

    def within(self, bound: float) -> int:
        from dialler.cdc.metrics import BUCKETS

        return sum(self.count(f"le_{b}") for b in BUCKETS if b <= bound)

    async def start(self, sqs: Any, qurl: str) -> None:
        self.base = await self._fields()
        self.fields = dict(self.base)

        async def poll() -> None:
            last = self.applied
            while not self._stop.is_set():
                self.fields = await self._fields()
                new = self.applied - last
                if new > 0:
                    raw = await self.redis.lrange(self.recent, 0, new - 1)
                    self.samples += [float(r.split(":")[1]) for r in raw]
                    last = self.applied
                await asyncio.sleep(0.1)

        async def depth() -> None:
            while not self._stop.is_set():
                attrs = await asyncio.to_thread(
                    sqs.get_queue_attributes, QueueUrl=qurl, AttributeNames=["ApproximateNumberOfMessages"]
                )
                self.depths.append(int(attrs["Attributes"]["ApproximateNumberOfMessages"]))
                await asyncio.sleep(1)

        self._tasks = [asyncio.create_task(poll()), asyncio.create_task(depth())]

    async def wait_for(self, applied: int, timeout: float) -> float:
        """Seconds until ``applied`` records were counted (nan on timeout)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            self.fields = await self._fields()
            if self.applied >= applied:
                return time.perf_counter() - t0
            await asyncio.sleep(0.02)
        return float("nan")

    async def stop(self) -> None:
        await asyncio.sleep(0.25)  # the last samples
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def writer_connections(url: str, count: int) -> list[Any]:
    import aiomysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return [
        await aiomysql.connect(
            host=u.host, port=u.port or 3306, user=u.username, password=u.password or "", db=u.database, autocommit=True
        )
        for _ in range(count)
    ]


async def direct_case(args: argparse.Namespace, ctx: dict[str, Any], repeat: int) -> Run:
    return await sustained_case(args, ctx, repeat, direct=True)


async def sustained_case(args: argparse.Namespace, ctx: dict[str, Any], repeat: int, direct: bool = False) -> Run:
    """One UPDATE per transaction (autocommit), paced; the signature toggled so that the customer moves.
    ``direct``: no publisher; the bench sends each change's record to SQS itself once its commit
    returned (batched every 50 ms, as the publisher batches), as DMS would in production: the
    dialler's part alone, without the local stand-in's binlog decoding."""
    from dialler.cdc.records import Operation, format_timestamp, published_record

    stores, sqs, qurl = ctx["stores"], ctx["sqs"], ctx["qurl"]
    outbox: list[str] = []
    writing = [True]

    async def send() -> None:
        while writing[0] or outbox:
            await asyncio.sleep(0.05)
            while outbox:
                body, outbox[:] = outbox[:1000], outbox[1000:]
                await asyncio.to_thread(sqs.send_message, QueueUrl=qurl, MessageBody="[" + ",".join(body) + "]")

    total = int(args.rate * args.seconds)
    users = args.users
    start = (repeat * total) % users
    conns = await writer_connections(stores.settings.replica_url, args.writers)
    obs = Observer(stores)
    await obs.start(sqs, qurl)
    issued = [0]
    behind = [0.0]
    touched: set[int] = set()
    sql = (
        "UPDATE users SET current_signature_file_id = IF(current_signature_file_id IS NULL, %s, NULL),"
        " updated_at = NOW() WHERE id = %s"
    )
    t0 = time.perf_counter()

    async def one_writer(conn: Any) -> None:
        async with conn.cursor() as cur:
            while issued[0] < total:
                k = issued[0]
                issued[0] += 1
                delay = t0 + k / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind[0] = max(behind[0], -delay)
                user = (start + k) % users + 1
                touched.add(user)
                await cur.execute(sql, (5000 + k, user))
                if direct:
                    record = published_record(
                        schema="claims_bench",
                        table="users",
                        operation=Operation.UPDATE,
                        data={"id": user},
                        before=None,
                        timestamp=format_timestamp(datetime.now(UTC)),
                        transaction_id=None,
                        log_file="bench-capture.000001",
                        log_pos=repeat * total + k + 1,  # ordered like binlog positions
                    )
                    outbox.append(json.dumps(record, separators=(",", ":")))

    begin = await binlog_end(stores)
    with RssSampler(ctx["pids"]) as sampler:
        sender = asyncio.create_task(send()) if direct else None
        await asyncio.gather(*(one_writer(c) for c in conns))
        write_s = time.perf_counter() - t0
        writing[0] = False
        if sender is not None:
            await sender
        drain = await obs.wait_for(total, args.drain_timeout)
    end = await binlog_end(stores)
    await obs.stop()
    for conn in conns:
        conn.close()
    if not direct:
        ctx.setdefault("ranges", {})["single-row transactions"] = (begin, end)
    run = Run()
    run.values = {
        "achieved": total / write_s,
        "p50": percentile(obs.samples, 50),
        "p99": percentile(obs.samples, 99),
        "max": max(obs.samples, default=float("nan")),
        "within_1s": 100 * obs.within(1.0) / max(obs.applied, 1),
        "drain": drain,
        "depth_max": max(obs.depths, default=0),
    }
    run.notes = {
        "committed": total,
        "applied": obs.applied,
        "sampled": len(obs.samples),
        "writer_behind": behind[0],
        "cpu": {p: (sampler.cpu[p], sampler.cpu_pct(p), sampler.peak[p]) for p in ctx["pids"]},
    }
    await check_applied(stores, "direct" if direct else "sustained", obs, total, touched)
    return run


async def bulk_case(args: argparse.Namespace, ctx: dict[str, Any], repeat: int) -> Run:
    """``--bulk-statements`` UPDATEs over claims 1..bulk-rows, each its own transaction."""
    from sqlalchemy import text

    stores, sqs, qurl = ctx["stores"], ctx["sqs"], ctx["qurl"]
    rows = args.bulk_rows
    step = -(-rows // args.bulk_statements)
    async with stores.replica.connect() as conn:
        touched = {
            int(r[0]) for r in await conn.execute(text(f"SELECT DISTINCT user_id FROM claims WHERE id <= {rows}"))
        }
    (conn,) = await writer_connections(stores.settings.replica_url, 1)
    obs = Observer(stores)
    await obs.start(sqs, qurl)
    begin = await binlog_end(stores)
    statement_s: list[float] = []
    with RssSampler(ctx["pids"]) as sampler:
        t0 = time.perf_counter()
        async with conn.cursor() as cur:
            for lo in range(1, rows + 1, step):
                s0 = time.perf_counter()
                await cur.execute(
                    "UPDATE claims SET status = IF(status = 'withdrawn', 'in_progress', 'withdrawn'),"
                    " updated_at = NOW() WHERE id BETWEEN %s AND %s",
                    (lo, min(lo + step - 1, rows)),
                )
                statement_s.append(time.perf_counter() - s0)
        last_commit = time.perf_counter()
        drain = await obs.wait_for(rows, args.drain_timeout)
    end = await binlog_end(stores)
    await obs.stop()
    conn.close()
    ctx.setdefault("ranges", {})["bulk statements"] = (begin, end)
    run = Run()
    run.values = {
        "after_last_commit": drain,
        "after_first_commit": last_commit - t0 - statement_s[0] + drain,
        "statements_s": last_commit - t0,
        "p99": percentile(obs.samples, 99),
        "max": max(obs.samples, default=float("nan")),
        "within_10s": 100 * obs.within(10.0) / max(obs.applied, 1),
        "depth_max": max(obs.depths, default=0),
    }
    run.notes = {
        "committed": rows,
        "applied": obs.applied,
        "sampled": len(obs.samples),
        "customers": len(touched),
        "cpu": {p: (sampler.cpu[p], sampler.cpu_pct(p), sampler.peak[p]) for p in ctx["pids"]},
    }
    await check_applied(stores, "bulk", obs, rows, touched)
    return run


async def check_applied(stores: Any, case: str, obs: Observer, committed: int, touched: set[int]) -> None:
    if obs.applied != committed:
        raise AssertionError(f"{case}: {obs.applied} records applied of {committed} committed")
    wrong = await placement_mismatches(stores, sorted(touched))
    if wrong:
        raise AssertionError(f"{case}: {len(wrong)} of {len(touched)} customers misplaced, e.g. {wrong[:5]}")


# --- the run ------------------------------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> dict[str, list[Run]]:
    args = parse_args(argv)
    import psutil

    from bench.call_sessions import start_worker, stop_worker
    from devstack.seed import seed_replica
    from devstack.services import stop_pid
    from dialler.cdc.apply import versions_key
    from dialler.cdc.publisher import status_key
    from dialler.integrations.sqs import ensure_cdc_queues
    from dialler.queues.rebuild import recompute
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results: dict[str, list[Run]] = {c: [] for c in cases}
    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, moto=True, temporal=True) as stack:
        settings = stack.settings(queue_rebuild_interval_s=86_400)
        t0 = time.perf_counter()
        await seed_replica(stack.replica_url, users=args.users, seed=9, only_if_empty=False)
        stores = Stores.open(settings)
        await recompute(stores, queue_engine(stores), list(range(1, args.users + 1)))
        print(f"seeded {args.users:,} customers and placed them in {time.perf_counter() - t0:.1f} s", flush=True)
        publisher = worker = None
        try:
            if "apply" in cases:
                for r in range(args.repeat):
                    run = await _timed(apply_case(args, stores, r))
                    results["apply"].append(run)
                    print(
                        f"apply run {r + 1}: {run.values['records_per_s']:,.0f} records/s, "
                        f"{run.values['cpu_per_1k'] * 1000:.0f} ms CPU per 1,000 records, "
                        f"{run.values['customers']:,.0f} customers; load {run.load_before} -> {run.load_after}",
                        flush=True,
                    )
                if args.profile:  # one more run, profiled, not counted (cProfile slows what it watches)
                    profiled = await apply_case(args, stores, args.repeat, profile=True)
                    results["apply"][0].notes["profile"] = profiled.notes["profile"]
                # The pre-made records carried made-up binlog positions: forget them before real ones come.
                await stores.redis.delete(versions_key(settings.redis_prefix))
            if {"direct", "sustained", "bulk"} & set(cases):
                await asyncio.to_thread(ensure_cdc_queues, settings)
                sqs = stores.sqs()
                qurl = (await asyncio.to_thread(sqs.get_queue_url, QueueName=settings.cdc_queue_name))["QueueUrl"]
                profile = ["--profile", str(Path(args.worker_profile).resolve())] if args.worker_profile else []
                worker = start_worker(stack, settings, args, ["--cdc-ingest", *profile])
                temporal_pid = next(
                    (
                        c.pid
                        for c in psutil.Process(os.getpid()).children(recursive=True)
                        if "temporal" in " ".join(c.cmdline()[:2])
                    ),
                    None,
                )
                pids = {
                    "worker": worker.pid,
                    "moto": stack.moto_pid,
                    "mariadb": stack.mariadb_pid,
                    "bench (writers)": os.getpid(),
                }
                if temporal_pid:
                    pids["temporal"] = temporal_pid
                ctx = {"stores": stores, "sqs": sqs, "qurl": qurl, "pids": pids}
                await asyncio.sleep(1)
                await run_cases(args, ctx, results, [("direct", direct_case)])
                env = {
                    **api_env(settings),
                    "DIALLER_PUBLISHER_METRICS_PORT": "0",
                    "DIALLER_PUBLISHER_CHECKPOINT_NAME": f"bench-{stack.unique}",
                }
                log_path = stack.run_dir / "logs" / "publisher.log"
                # --reset-checkpoint: start at the binlog's end (after the seed and the direct case).
                publisher = subprocess.Popen(
                    [sys.executable, "-m", "workers.publisher", "--reset-checkpoint"],
                    cwd=ROOT,
                    env=env,
                    stdout=log_path.open("ab"),
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
                pids["publisher"] = publisher.pid
                for _ in range(150):
                    if (await stores.redis.hgetall(status_key(settings))).get("state") == "running":
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise RuntimeError("publisher not running: " + log_path.read_text()[-1500:])
                await asyncio.sleep(1)
                await run_cases(args, ctx, results, [("sustained", sustained_case), ("bulk", bulk_case)])
                if "decode" in cases:
                    for r in range(args.repeat):
                        run = await _timed(decode_case(settings, ctx.get("ranges", {}), args.decode_rows))
                        results["decode"].append(run)
                        print(
                            f"decode run {r + 1}: "
                            + ", ".join(f"{k} {val:,.0f}" for k, val in run.values.items())
                            + f"; load {run.load_before} -> {run.load_after}",
                            flush=True,
                        )
                    if args.profile:  # one more run, profiled, not counted
                        profiled = await decode_case(settings, ctx.get("ranges", {}), args.decode_rows, True)
                        results["decode"][0].notes.update(
                            {k: v for k, v in profiled.notes.items() if k.endswith("_profile")}
                        )
        finally:
            if publisher is not None:
                stop_pid(publisher.pid, timeout=15, proc=publisher)
            if worker is not None:
                stop_worker(worker)
            await stores.close()
    report(args, results)
    print(f"\nload at end {load()}", flush=True)
    return results


async def run_cases(args: argparse.Namespace, ctx: dict[str, Any], results: dict[str, list[Run]], cases: list) -> None:  # type: ignore[type-arg]
    for case, fn in cases:
        if case not in results:
            continue
        for r in range(args.repeat):
            run = await _timed(fn(args, ctx, r))
            results[case].append(run)
            print(
                f"{case} run {r + 1}: "
                + ", ".join(f"{k} {val:,.2f}" for k, val in run.values.items())
                + f"; applied {run.notes['applied']:,} of {run.notes['committed']:,}"
                f" (sampled {run.notes['sampled']:,}); load {run.load_before} -> {run.load_after}",
                flush=True,
            )
            await asyncio.sleep(3)


async def _timed(coro: Any) -> Run:
    before = load()
    run: Run = await coro
    run.load_before, run.load_after = before, load()
    return run


def report(args: argparse.Namespace, results: dict[str, list[Run]]) -> None:
    n = args.repeat
    print(f"\n## CDC at scale ({n} run{'s' * (n > 1)} per case: median (range))\n")
    if results.get("apply"):
        runs = results["apply"]
        print("| apply on one core | records/run | batch | records/s | CPU per 1,000 records | CPU share | load |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| parse + apply_records | {args.apply_records:,} | {args.apply_batch:,} | "
            f"{fmt(runs, 'records_per_s', digits=0)} | {fmt(runs, 'cpu_per_1k', ' s', 3)} | "
            f"{fmt(runs, 'cpu_share', digits=2)} | {runs[0].load_before} → {runs[-1].load_after} |"
        )
        phases: dict[str, list[float]] = {}
        for run in runs:
            for phase, seconds in run.notes["laps"].items():
                phases.setdefault(phase, []).append(seconds)
        total = sum(statistics.median(v) for v in phases.values())
        print("\n| apply phase (wall) | median s per run | share |\n|---|---|---|")
        for phase, values in sorted(phases.items(), key=lambda kv: -statistics.median(kv[1])):
            med = statistics.median(values)
            print(f"| {phase} | {med:.3f} | {100 * med / total:.0f} % |")
        for run in runs:
            if "profile" in run.notes:
                print(
                    "\nprofile of one more apply run (not counted above):\n```\n"
                    + run.notes["profile"][:6000]
                    + "\n```"
                )
                break
    for case in ("direct", "sustained"):
        if not results.get(case):
            continue
        runs = results[case]
        what = "capture by the bench (as DMS)" if case == "direct" else "through the publisher"
        print(
            f"\n| sustained, {what} | offered | achieved | applied | p50 | p99 | max | within 1 s (all records) | "
            "drain after last commit | SQS depth max | load before → after |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        applied = sum(r.notes["applied"] for r in runs)
        print(
            f"| {n} × {args.seconds:.0f} s | {args.rate:,.0f}/s | {fmt(runs, 'achieved', '/s', 0)} | "
            f"{applied:,} of {sum(r.notes['committed'] for r in runs):,} | {fmt(runs, 'p50', ' s')} | "
            f"{fmt(runs, 'p99', ' s')} | {fmt(runs, 'max', ' s')} | {fmt(runs, 'within_1s', ' %', 2)} | "
            f"{fmt(runs, 'drain', ' s')} | {fmt(runs, 'depth_max', '', 0)} | "
            f"{runs[0].load_before} → {runs[-1].load_after} |"
        )
    if results.get("bulk"):
        runs = results["bulk"]
        print(
            "\n| bulk | rows (statements) | customers | statements took | all applied after last commit | "
            "after first commit | p99 | max | within 10 s (all records) | load before → after |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {n} runs | {args.bulk_rows:,} ({args.bulk_statements}) | {runs[0].notes['customers']:,} | "
            f"{fmt(runs, 'statements_s', ' s')} | {fmt(runs, 'after_last_commit', ' s')} | "
            f"{fmt(runs, 'after_first_commit', ' s')} | {fmt(runs, 'p99', ' s')} | {fmt(runs, 'max', ' s')} | "
            f"{fmt(runs, 'within_10s', ' %', 2)} | {runs[0].load_before} → {runs[-1].load_after} |"
        )
    for case in ("direct", "sustained", "bulk"):
        if results.get(case):
            print(f"\n| {case}: process | CPU s (% of one core), median | peak RSS |\n|---|---|---|")
            for proc in results[case][0].notes["cpu"]:
                cpu = statistics.median(r.notes["cpu"][proc][0] for r in results[case])
                pct = statistics.median(r.notes["cpu"][proc][1] for r in results[case])
                peak = max(r.notes["cpu"][proc][2] for r in results[case])
                print(f"| {proc} | {cpu:.1f} s ({pct:.0f} %) | {peak:.0f} MB |")
    if results.get("decode"):
        runs = results["decode"]
        print(
            "\n| binlog decode (same machine) | rows | mysql-replication rows/s | events/s | "
            "publisher reader records/s |\n|---|---|---|---|---|"
        )
        names = sorted({k.rsplit("_rows_per_s", 1)[0] for k in runs[0].values if k.endswith("_rows_per_s")})
        for name in names:
            print(
                f"| {name} | {runs[0].notes[f'{name}_rows']:,} | {fmt(runs, f'{name}_rows_per_s', digits=0)} | "
                f"{fmt(runs, f'{name}_events_per_s', digits=0)} | {fmt(runs, f'{name}_reader_per_s', digits=0)} |"
            )
        for name in names:
            if f"{name}_profile" in runs[0].notes:
                print(
                    f"\npublisher reader, {name} (one more run, profiled, not counted):\n```\n{runs[0].notes[f'{name}_profile'][:5000]}\n```"
                )


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)
