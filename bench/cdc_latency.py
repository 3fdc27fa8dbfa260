"""Benchmark of change data capture: commit on the replica -> customer re-placed in the Redis queues.

    .venv/bin/python bench/cdc_latency.py [--rate 200] [--seconds 60] [--burst-rate 1000] [--burst-seconds 30]

Private MariaDB (row binlog; ``--users`` customers seeded), moto SQS, Temporal dev server (WAL),
``bench_*`` PostgreSQL, ``bench:*`` Redis. Two processes of the product: the publisher
(``python -m workers.publisher``: binlog -> DMS records -> SQS) and the real worker with
CdcIngestWorkflow (bench/_worker.py --cdc-ingest: SQS -> recompute -> Redis queues).

A writer commits one UPDATE of one customer per transaction (postcode changed, so the row image
always changes), paced to ``--rate`` per second for ``--seconds`` from ``--writers`` connections, then
``--burst-rate`` per second for ``--burst-seconds``.

Commit-to-queue latency is the product's own measure (dialler.cdc.metrics: the ingest activity
records now - commit time for every fresh record after the recompute has written Redis; commit time
is the publisher's sub-second-clamped binlog timestamp); the bench drains the recent list every
0.5 s using records_total so that every record is counted once. Publisher lag is the publisher's
status hash (lag_s, refreshed every second) polled every 0.5 s; time to drain = end of the burst ->
every change applied (records_total reaches the number committed). SQS queue depth is sampled too.
CPU and peak RSS of publisher, worker, moto, MariaDB and Temporal are reported per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402
from bench.api_next_call import api_env  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--burst-rate", type=float, default=1000)
    p.add_argument("--burst-seconds", type=float, default=30)
    p.add_argument("--writers", type=int, default=8, help="writer connections")
    p.add_argument("--drain-timeout", type=float, default=300)
    p.add_argument("--ring", type=float, default=0.2)
    p.add_argument("--talk", type=float, default=0.5)
    return p.parse_args()


class Writer:
    def __init__(self, url: str, users: int, writers: int) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(url, pool_size=writers, max_overflow=0)
        self.users = users
        self.writers = writers
        self.committed = 0
        self.next_user = 0
        self.rng = random.Random(3)

    async def run(self, rate: float, seconds: float) -> tuple[int, float]:
        from sqlalchemy import text

        stmt = text("UPDATE users SET postcode = :pc WHERE id = :id")
        t0 = time.perf_counter()
        total = int(rate * seconds)
        issued = [0]

        async def one_writer() -> None:
            async with self.engine.connect() as conn:
                while issued[0] < total:
                    k = issued[0]
                    issued[0] += 1
                    delay = t0 + k / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.next_user = self.next_user % self.users + 1
                    await conn.execute(stmt, {"pc": f"B{self.rng.randrange(10**6)}", "id": self.next_user})
                    await conn.commit()
                    self.committed += 1

        await asyncio.gather(*(one_writer() for _ in range(self.writers)))
        return total, time.perf_counter() - t0


async def main() -> int:
    args = parse_args()
    import psutil

    from bench.call_sessions import start_worker, stop_worker
    from devstack.seed import seed_replica
    from dialler.cdc import metrics
    from dialler.cdc.publisher import status_key
    from dialler.integrations.sqs import ensure_cdc_queues
    from dialler.runtime import Stores

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, moto=True, temporal=True) as stack:
        settings = stack.settings(queue_rebuild_interval_s=86_400)
        await seed_replica(stack.replica_url, users=args.users, seed=9, only_if_empty=False)
        await asyncio.to_thread(ensure_cdc_queues, settings)
        stores = Stores.open(settings)
        sqs = stores.sqs()
        qurl = (await asyncio.to_thread(sqs.get_queue_url, QueueName=settings.cdc_queue_name))["QueueUrl"]
        env = {
            **api_env(settings),
            "DIALLER_PUBLISHER_METRICS_PORT": "0",
            "DIALLER_PUBLISHER_CHECKPOINT_NAME": f"bench-{stack.unique}",
        }
        log_path = stack.run_dir / "logs" / "publisher.log"
        # --reset-checkpoint: start at the binlog's end (after the seed), as after a fresh rebuild.
        publisher = subprocess.Popen(
            [sys.executable, "-m", "workers.publisher", "--reset-checkpoint"],
            cwd=ROOT,
            env=env,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        worker = start_worker(stack, settings, args, ["--cdc-ingest"])
        temporal_pid = next(
            (
                c.pid
                for c in psutil.Process(os.getpid()).children(recursive=True)
                if "temporal" in " ".join(c.cmdline()[:2])
            ),
            None,
        )
        pids = {"publisher": publisher.pid, "worker": worker.pid, "moto": stack.moto_pid, "mariadb": stack.mariadb_pid}
        if temporal_pid:
            pids["temporal"] = temporal_pid
        writer = Writer(stack.replica_url, args.users, args.writers)
        phases: dict[str, dict] = {}
        try:
            # wait until the publisher reports running
            for _ in range(100):
                st = await stores.redis.hgetall(status_key(settings))
                if st.get("state") == "running":
                    break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError("publisher not running: " + log_path.read_text()[-1500:])
            await asyncio.sleep(1)

            async def run_phase(name: str, rate: float, seconds: float) -> None:
                lat: list[float] = []
                lags: list[float] = []
                depths: list[int] = []
                base = int((await stores.redis.hget(metrics.key(settings.redis_prefix), "records_total")) or 0)
                last_total = [base]
                stop = asyncio.Event()

                async def collect() -> None:
                    while not stop.is_set():
                        total = int((await stores.redis.hget(metrics.key(settings.redis_prefix), "records_total")) or 0)
                        new = total - last_total[0]
                        if new > 0:
                            raw = await stores.redis.lrange(
                                metrics.recent_key(settings.redis_prefix), 0, min(new, metrics.RECENT) - 1
                            )
                            lat.extend(float(r.split(":")[1]) for r in raw)
                            last_total[0] = total
                        lag = (await stores.redis.hget(status_key(settings), "lag_s")) or "0"
                        lags.append(float(lag))
                        await asyncio.sleep(0.5)

                async def depth() -> None:
                    while not stop.is_set():
                        attrs = await asyncio.to_thread(
                            sqs.get_queue_attributes, QueueUrl=qurl, AttributeNames=["ApproximateNumberOfMessages"]
                        )
                        depths.append(int(attrs["Attributes"]["ApproximateNumberOfMessages"]))
                        await asyncio.sleep(1)

                tasks = [asyncio.create_task(collect()), asyncio.create_task(depth())]
                with RssSampler(pids) as sampler:
                    committed0 = writer.committed
                    total, write_s = await writer.run(rate, seconds)
                    t_end = time.perf_counter()
                    drained_s = float("nan")
                    while time.perf_counter() - t_end < args.drain_timeout:
                        if last_total[0] - base >= writer.committed - committed0:
                            drained_s = time.perf_counter() - t_end
                            break
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(0.6)
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                phases[name] = dict(
                    rate=rate,
                    seconds=seconds,
                    committed=writer.committed - committed0,
                    write_s=write_s,
                    applied=last_total[0] - base,
                    lat=lat,
                    lags=lags,
                    depths=depths,
                    drained_s=drained_s,
                    sampler=sampler,
                    load=load(),
                )
                print(
                    f"{name}: committed {writer.committed - committed0} in {write_s:.1f} s, applied "
                    f"{last_total[0] - base}, p50 {percentile(lat, 50):.2f} p99 {percentile(lat, 99):.2f} s, "
                    f"max lag {max(lags, default=0):.1f} s, drain {drained_s:.1f} s, load {load()}",
                    flush=True,
                )

            await run_phase("steady", args.rate, args.seconds)
            await asyncio.sleep(3)
            await run_phase("burst", args.burst_rate, args.burst_seconds)
        finally:
            from devstack.services import stop_pid

            stop_pid(publisher.pid, timeout=15, proc=publisher)
            stop_worker(worker)
            await writer.engine.dispose()
            await stores.close()

        print("\n## CDC commit-to-queue\n")
        print(
            "| phase | offered | committed (achieved rate) | applied | latency p50 | p99 | max | publisher lag max | "
            "SQS depth max | drain after last commit | load (1/5/15) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, ph in phases.items():
            lat = ph["lat"]
            print(
                f"| {name} | {ph['rate']:.0f}/s × {ph['seconds']:.0f} s | {ph['committed']:,} "
                f"({ph['committed'] / ph['write_s']:.0f}/s) | {ph['applied']:,} | {percentile(lat, 50):.2f} s | "
                f"{percentile(lat, 99):.2f} s | {max(lat, default=float('nan')):.2f} s | "
                f"{max(ph['lags'], default=0):.1f} s | {max(ph['depths'], default=0)} | {ph['drained_s']:.1f} s | {ph['load']} |"
            )
        print("\n| phase | process | CPU s (% of one core) | peak RSS |\n|---|---|---|---|")
        for name, ph in phases.items():
            s = ph["sampler"]
            for proc in pids:
                print(f"| {name} | {proc} | {s.cpu[proc]:.1f} s ({s.cpu_pct(proc):.0f} %) | {s.peak[proc]:.0f} MB |")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
