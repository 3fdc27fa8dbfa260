"""``python -m devstack seed``: demo data in the replica and the demo accounts in PostgreSQL.

Development and demo stacks only (docker-compose's ``migrate`` service runs it after ``dialler
migrate``); ``make run`` seeds an empty replica by itself. Kept out of the operator CLI
(``dialler``), which must not ship a generator of fake customers into production."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from dialler.config import Settings, get_settings
from dialler.logs import configure_logging


async def seed(settings: Settings, users: int, seed_value: int, force: bool) -> None:
    from devstack.demo import ensure_demo_accounts
    from devstack.seed import seed_replica
    from dialler.db.engines import create_postgres_engine, session_factory

    report = await seed_replica(settings.replica_url, users=users, seed=seed_value, only_if_empty=not force)
    if report.skipped:
        print("replica already has users: nothing generated (use --force to add anyway)")
    else:
        print(
            f"replica: {report.users} users, {report.claims} claims, {report.requirements} requirements "
            f"in {report.seconds:.1f} s"
        )
    engine = create_postgres_engine(settings)
    async with session_factory(engine)() as session:
        created = await ensure_demo_accounts(session)
    await engine.dispose()
    print(f"demo accounts created: {created}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="RMC Dialler development data")
    commands = parser.add_subparsers(dest="command", required=True)
    seed_cmd = commands.add_parser("seed", help="generate demo data in the replica and the demo accounts")
    seed_cmd.add_argument("--users", type=int, default=50_000)
    seed_cmd.add_argument("--seed", type=int, default=42)
    seed_cmd.add_argument("--force", action="store_true", help="generate even when the replica has users")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(seed(settings, args.users, args.seed, args.force))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # SDK issue #300: the interpreter can abort at exit after using the Temporal SDK
