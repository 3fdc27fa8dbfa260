"""Benchmark of a TPS/CTPS file upload: the whole path ``POST /compliance/do-not-call/tps`` runs.

    .venv/bin/python bench/tps_load.py [--numbers 1000000] [--users 50000] [--runs 3] [--chunk 65536]
    .venv/bin/python bench/tps_load.py --quick    (a few thousand lines, one run: what tests/bench runs)

The issue's target: 1 million numbers in under a minute. A generated file (UK mobile and landline
numbers in the forms people type, one in 1,000 lines invalid, CSV with a header and a date column as
the TPS file comes), holding the numbers of one customer in ten as they are typed in the replica, is
fed in ``--chunk``-byte pieces, as the API receives an upload, to
:func:`dialler.compliance.dnc.load_tps_and_replace` (the code behind the endpoint): read and validate
the lines, COPY them into PostgreSQL, list the new numbers, find the customers who have one (joined
against the replica's ``--users`` customers), and re-place those customers so that they leave the
queues. Then the same file again (nothing new). Each run starts from an empty list with every
customer placed. Reported: wall time per run and per phase, median and range over ``--runs``, and the
machine's load averages. Exits 1 when a customer whose number was listed is still in a queue.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench._stack import Stack, load, machine  # noqa: E402
from devstack.seed import seed_replica  # noqa: E402
from dialler.compliance import dnc  # noqa: E402
from dialler.queues.phones import normalise_phone  # noqa: E402
from dialler.queues.rebuild import Laps, recompute  # noqa: E402
from dialler.queues.runtime import queue_engine  # noqa: E402
from dialler.runtime import Stores  # noqa: E402

PLANTED_EVERY = 10  # one customer in ten has their number on the file


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--numbers", type=int, default=1_000_000, help="lines of the file")
    p.add_argument("--users", type=int, default=50_000, help="customers in the replica")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--chunk", type=int, default=65_536)
    p.add_argument("--quick", action="store_true", help="a short run: 3,000 lines, 300 customers, one run")
    args = p.parse_args()
    if args.quick:
        args.numbers, args.users, args.runs = 3_000, 300, 1
    return args


def tps_file(n: int, planted: list[str], seed: int = 7) -> bytes:
    """``n`` lines: the ``planted`` numbers (as the customers typed them) spread through generated ones."""
    rng = random.Random(seed)
    lines = ["Telephone Number,Date Added"]
    planted_at = {i * n // max(len(planted), 1): number for i, number in enumerate(planted)}
    for i in range(n):
        if i in planted_at:
            lines.append(f'"{planted_at[i]}",2026-11-{1 + i % 28:02d}')
            continue
        if i % 1000 == 999:
            lines.append("not-a-number,2026-11-01")
            continue
        if rng.random() < 0.7:
            nsn = f"7{rng.choice('1234579')}{rng.randrange(10_000_000, 99_999_999)}"  # mobile
        else:
            nsn = f"20{rng.choice('378')}{rng.randrange(1_000_000, 9_999_999)}"  # London landline
        form = rng.randrange(3)
        number = f"0{nsn}" if form == 0 else f"+44{nsn}" if form == 1 else f"0{nsn[:4]} {nsn[4:]}"
        lines.append(f"{number},2026-11-{1 + i % 28:02d}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def queued(stores: Stores, user_ids: list[int]) -> int:
    engine = queue_engine(stores)
    return sum([await engine.position(u) is not None for u in user_ids])


async def main() -> int:
    args = parse_args()
    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True) as stack:
        await seed_replica(stack.replica_url, users=args.users, seed=11)
        stores = Stores.open(stack.settings())
        try:
            async with stores.replica.connect() as conn:
                rows = (await conn.execute(text("SELECT id, phone_number FROM users WHERE deleted_at IS NULL"))).all()
            planted = [(int(r.id), str(r.phone_number)) for r in rows if r.id % PLANTED_EVERY == 0 and r.phone_number]
            listed_users = [u for u, typed in planted if normalise_phone(typed).e164]
            data = tps_file(args.numbers, [typed for _, typed in planted])
            print(
                f"file: {args.numbers:,} lines + header, {len(data) / 1e6:.1f} MB, {len(planted):,} customers' numbers"
                f" on it ({len(listed_users):,} callable); replica: {len(rows):,} customers",
                flush=True,
            )
            await recompute(stores, queue_engine(stores), [int(r.id) for r in rows])
            walls: dict[str, list[float]] = {"first load": [], "reload": []}
            failed = False
            for run in range(1, args.runs + 1):
                async with stores.postgres.begin() as conn:
                    await conn.execute(text("TRUNCATE do_not_call"))
                await recompute(stores, queue_engine(stores), listed_users)  # back in the queues
                in_queue_before = await queued(stores, listed_users)
                for label in ("first load", "reload"):
                    laps = Laps()
                    load_before, started = load(), time.perf_counter()
                    result = await dnc.load_tps_and_replace(
                        stores, chunks(data, args.chunk), at=datetime.now(UTC), laps=laps
                    )
                    wall = time.perf_counter() - started
                    walls[label].append(wall)
                    phases = ", ".join(f"{k} {v:.2f} s" for k, v in laps.seconds.items())
                    print(
                        f"run {run} {label}: {wall:.1f} s ({args.numbers / wall:,.0f} lines/s): listed"
                        f" {result.loaded:,}, already listed {result.already_listed:,}, invalid"
                        f" {result.invalid_count:,}, customers re-placed {len(result.customers):,} [{phases}]"
                        f" (load {load_before} -> {load()})",
                        flush=True,
                    )
                still = await queued(stores, listed_users)
                print(
                    f"run {run}: customers with a listed number in a queue: before {in_queue_before:,}, after {still}"
                )
                failed |= still > 0 or in_queue_before == 0
            for label, values in walls.items():
                print(
                    f"{label}: median {statistics.median(values):.1f} s (range {min(values):.1f}-{max(values):.1f} s)"
                    f" over {len(values)} run(s), {args.numbers / statistics.median(values):,.0f} lines/s"
                )
            print(f"load at end {load()}")
            return 1 if failed else 0
        finally:
            await stores.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
