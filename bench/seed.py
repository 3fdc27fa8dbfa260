"""Benchmark the replica data generator on a fresh database.

    python bench/seed.py --users 50000 --url mysql+aiomysql://root@127.0.0.1:3306/seed_bench

Drops and recreates the database named in the URL, seeds it, and prints the rows written, the
wall time, this process's CPU time and peak resident memory (the generator's side; the server's
own CPU and memory are not included) and the size of the tables. Results belong in
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from devstack.seed import seed_replica

DEFAULT_URL = "mysql+aiomysql://root@127.0.0.1:3306/seed_bench"
# Dropping one of these would break the server, whatever the URL says.
_SYSTEM_SCHEMAS = {"mysql", "information_schema", "performance_schema", "sys"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000, help="customers to generate (default 50000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"writer URL; its database is dropped (default {DEFAULT_URL})"
    )
    return parser.parse_args(argv)


async def recreate_database(url: URL) -> None:
    name = url.database
    if not name or name.lower() in _SYSTEM_SCHEMAS:
        raise SystemExit(f"refusing to drop database {name!r}")
    server_url = URL.create(url.drivername, url.username, url.password, url.host, url.port, query=url.query)
    engine = create_async_engine(server_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")
    finally:
        await engine.dispose()


async def table_sizes_mb(url: URL) -> float:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "SELECT COALESCE(SUM(data_length + index_length), 0) / 1048576 "
                "FROM information_schema.tables WHERE table_schema = DATABASE()"
            )
            return float(result.scalar_one())
    finally:
        await engine.dispose()


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = make_url(args.url)
    await recreate_database(url)
    report = await seed_replica(args.url, users=args.users, seed=args.seed, only_if_empty=False)
    rows = report.users + report.claims + report.requirements
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_mb = usage.ru_maxrss / 1024  # Linux reports KiB
    # The generator's own CPU time: on a shared machine it varies far less than wall time, which
    # is mostly the database's work.
    cpu_seconds = usage.ru_utime + usage.ru_stime
    on_disk_mb = await table_sizes_mb(url)
    print(
        f"users={report.users:,} claims={report.claims:,} requirements={report.requirements:,} "
        f"rows={rows:,}\n"
        f"seconds={report.seconds:.1f} rows_per_second={rows / report.seconds:,.0f} "
        f"client_cpu_seconds={cpu_seconds:.1f} peak_rss_mb={peak_rss_mb:.0f} table_size_mb={on_disk_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
